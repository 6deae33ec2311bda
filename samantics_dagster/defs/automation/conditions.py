"""When the dataset-wide assets re-run: Declarative Automation conditions (no Dagster objects of ours).

Why this rather than an asset sensor: the condition lives on the asset (the UI shows why it did or did not
run), it waits while any upstream partition is still running (one merge after a burst of runs, not one per
run), and it needs no cursor of ours. ``eager()`` would also wait until *every* category is done; a
dataset always has some category in flight or failed, so that part is dropped.

Kept apart from the sensors and jobs so that asset modules can import it without importing them.
"""

from dagster import AutomationCondition

EXPORT_CONDITION = AutomationCondition.eager().without(~AutomationCondition.any_deps_missing())
