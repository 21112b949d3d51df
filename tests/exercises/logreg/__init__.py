"""A second, small exercise the kit's tests grade end to end: softmax regression in NumPy
on Gaussian blobs. It lives outside the kit (a rubric's exercise_path finds it), so it
shows what an exercise needs and that no engine file knows of it. This file imports
nothing: what a student's code may import alone (data.py) stays unflagged."""
