"""Task registry: a job's `task` key names one of these."""

from __future__ import annotations

import difflib

from mlbench_ray.tasks.base import Task


def _registry() -> dict[str, type[Task]]:
    from mlbench_ray.tasks.image_classification import ImageClassificationTask
    from mlbench_ray.tasks.language_modeling import LanguageModelingTask
    from mlbench_ray.tasks.masked_language_modeling import MaskedLanguageModelingTask
    from mlbench_ray.tasks.translation import GNMTTask, TransformerTask

    tasks: list[type[Task]] = [
        ImageClassificationTask,
        LanguageModelingTask,
        MaskedLanguageModelingTask,
        GNMTTask,
        TransformerTask,
    ]
    return {task.name: task for task in tasks}


def task_names() -> list[str]:
    return sorted(_registry())


def get_task_class(name: str) -> type[Task]:
    """Return the task class registered under `name`; raise ValueError naming the valid tasks."""
    registry = _registry()
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(f"unknown task {name!r}; {hint}valid tasks: {', '.join(sorted(registry))}")
