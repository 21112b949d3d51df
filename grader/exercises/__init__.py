"""The exercises the kit grades, one package each (see grader/exercise.py). A rubric's
`exercise_path` adds a folder outside the kit to this package's search path."""
