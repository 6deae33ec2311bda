"""``samantics ml-backend``: click-to-mask for Label Studio (SAM3's point/box model as an ML backend).

Connect it to a review project in Label Studio (Settings > Model, "Interactive preannotations" on; or
``review_tasks`` does it for every project it creates when ``LABEL_STUDIO_ML_BACKEND_URL`` is set), then
click with the smart keypoint tool or drag a smart box: the mask comes back as a polygon to accept.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path


def cmd_ml_backend(args: argparse.Namespace) -> int:
    from samantics_dagster.cli.errors import CliError
    from samantics_dagster.core.label.model import load_sam3_tracker, resolve_model_dir
    from samantics_dagster.core.review_backend.server import make_server
    from samantics_dagster.core.review_backend.service import BackendSettings, MLBackend
    from samantics_dagster.core.settings import Env, read_settings

    model_cache = args.model_cache or os.environ.get("MODEL_CACHE")
    if not model_cache:
        raise CliError("set MODEL_CACHE (or --model-cache) to the folder holding the SAM3 snapshot; the backend "
                       "loads the same checkpoint as the labeller, offline")
    dataset = args.dataset_dir or os.environ.get("DATASET_DIR")
    env = read_settings()
    cache_mb = env.ml_backend_cache_mb if args.cache_mb is None else args.cache_mb
    settings = BackendSettings(
        model_dir=None, dataset_dir=Path(dataset) if dataset else None, cache_bytes=int(cache_mb * (1 << 20)),
        device=args.device or env.sam3_device, dtype=args.dtype, label_studio_url=env.label_studio_url,
        label_studio_api_key=os.environ.get(Env.LABEL_STUDIO_API_KEY, ""))

    def load():
        return load_sam3_tracker(resolve_model_dir(Path(model_cache)), device=settings.device, dtype=settings.dtype)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = MLBackend(settings, load)
    try:
        server = make_server(backend, args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({exc}); pick another --port") from None
    backend.start_loading()
    port = server.server_address[1]
    print(f"samantics ml-backend: listening on http://{args.host}:{port} (model loading from {model_cache}; "
          f"image store {dataset or 'not set'}; embedding cache {cache_mb:g} MB; device {settings.device})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `docker stop`: leave through the finally below
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        backend.images.close()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("ml-backend", help="serve SAM3's click/box model to Label Studio (interactive pre-annotation)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--model-cache", help="overrides MODEL_CACHE")
    p.add_argument("--dataset-dir", help="overrides DATASET_DIR (the image store tasks are read from)")
    p.add_argument("--cache-mb", type=float, help="memory for cached image embeddings, least recently clicked "
                   "dropped first (default $SAMANTICS_ML_BACKEND_CACHE_MB, 1024)")
    p.add_argument("--device", help="cuda, cuda:N, cpu or auto (default $SAMANTICS_DEVICE, else auto)")
    p.add_argument("--dtype", default="auto", help="bf16, fp16, fp32 or auto (bf16 on CUDA, fp32 on the CPU)")
    p.set_defaults(func=cmd_ml_backend)
