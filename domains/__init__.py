"""Built-in task domains; each sub-directory with a task.yaml is a task."""
