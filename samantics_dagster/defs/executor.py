"""How a run executes its steps: one process per run, or one pod per step on Kubernetes."""

import dagster as dg

from samantics_dagster.core.settings import settings


def _executor() -> dg.ExecutorDefinition:
    """One process per run, not one per step: each step process re-imports the code location (seconds), and
    the run's steps are a chain anyway; runs of different categories still run in parallel. On Kubernetes
    (SAMANTICS_EXECUTOR=k8s, deploy/k8s.md) each step is a pod, so only labelling holds a GPU node."""
    if settings().executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=_executor())
