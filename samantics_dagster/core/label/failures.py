"""Failed labels: which errors a later run tries again, and the failure share a category is judged by.

Two kinds of failure are told apart when the error is recorded:

- a **device error** (CUDA out of memory, a CUDA/cuDNN/cuBLAS runtime error, an accelerator error) says
  nothing about the image: the same image may label fine on the next attempt, on a GPU with memory free or
  a driver that recovered. Its error starts with :data:`DEVICE_ERROR`, and every later run of the category
  (Dagster's retry of the run included) tries it once more, without ``retry_failed``;
- any **other** error (an unreadable image, a post-processing bug) would fail again the same way: the row
  stays ``failed`` until the cause is fixed and a run asks for ``retry_failed``.

The failure share is judged on the category's rows, not on one attempt: a retry that tries nothing (its
failures kept from the first attempt) must not turn the blocking check green while the rows are failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from samantics_dagster.core.dataset.schema import LabelStatus

DEVICE_ERROR = "device error (the next run tries it again): "
_DEVICE_MARKERS = ("CUDA", "cuDNN", "CUDNN", "CUBLAS", "cuBLAS", "NCCL", "MPS backend out of memory",
                   "out of memory")
_ERROR_CHARS = 500


def is_device_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from the device rather than from the image: an out-of-memory error, a torch
    accelerator error, or a runtime error raised by the CUDA/cuDNN/cuBLAS stack."""
    try:
        import torch
    except ImportError:  # no torch, no device
        return False
    device_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch, "AcceleratorError", None))
                         if isinstance(t, type))
    if isinstance(exc, device_types):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _DEVICE_MARKERS)


def error_text(exc: BaseException) -> str:
    """The ``error`` a failed row records: the exception, marked when it came from the device."""
    text = f"{type(exc).__name__}: {exc}"
    return ((DEVICE_ERROR if is_device_error(exc) else "") + text)[:_ERROR_CHARS]


def failed_on_device(error: object) -> bool:
    """Whether a recorded ``error`` is a device error (tried again by the next run)."""
    return isinstance(error, str) and error.startswith(DEVICE_ERROR)


@dataclass(frozen=True)
class FailureShare:
    """The category's failed rows under one labeler, and how many of them this attempt made."""

    accepted: int  # rows of the category (one per accepted image)
    failed: int  # of which failed, under this labeler
    attempted: int  # images this attempt tried
    failed_this_run: int  # of which failed
    device_errors: int  # failed rows whose error came from the device (the next run tries them again)
    top_errors: dict[str, int]

    @property
    def failed_earlier(self) -> int:
        """Failed rows kept from earlier attempts (not tried in this one)."""
        return self.failed - self.failed_this_run

    @property
    def share(self) -> float:
        return self.failed / self.accepted if self.accepted else 0.0

    def passed(self, bound: float) -> bool:
        return self.share <= bound

    def metadata(self, bound: float) -> dict[str, int | float | dict[str, int]]:
        return {"accepted": self.accepted, "failed": self.failed, "failed_share": round(self.share, 4),
                "bound": bound, "attempted": self.attempted, "failed_this_run": self.failed_this_run,
                "failed_earlier": self.failed_earlier, "device_errors": self.device_errors,
                "top_errors": self.top_errors}

    def explain(self, bound: float) -> str | None:
        """Why the category is red, and what to do; None when it is not."""
        if self.passed(bound):
            return None
        common = next(iter(self.top_errors), "?")
        retry = ("the next run tries the device errors again; " if self.device_errors else "")
        return (f"{self.failed} of {self.accepted} accepted images are failed ({self.share:.1%} > {bound:.0%}): "
                f"{self.failed_this_run} of the {self.attempted} tried in this run, {self.failed_earlier} kept from "
                f"earlier attempts. Most common error: {common}. Fix the cause, then re-run ({retry}retry_failed: "
                "true tries them all), or raise max_failed_share.")


def failure_share(table: pd.DataFrame, labeler: str, *, attempted: int, failed_this_run: int) -> FailureShare:
    """Judge the category's table (one row per accepted image) after a run under ``labeler``."""
    failed = table[(table.status == LabelStatus.FAILED) & (table.labeler == labeler)]
    errors = failed["error"].value_counts().head(3)
    return FailureShare(accepted=len(table), failed=len(failed), attempted=attempted, failed_this_run=failed_this_run,
                        device_errors=sum(failed_on_device(e) for e in failed["error"]),
                        top_errors={str(k): int(v) for k, v in errors.items()})
