"""Softmax regression in NumPy: the reference solution."""
import numpy as np
from grader.exercises.logreg.data import CLASSES, blobs

DEMO_X, DEMO_Y = blobs(5, seed=0)  # the exercise's own data, imported as the handout allows


def standardize(x, mean, std):
    return (np.asarray(x, dtype=float) - mean) / std


def predict_proba(w, b, x):
    logits = np.asarray(x, dtype=float) @ w + b
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit(x, y, steps, lr):
    x = np.asarray(x, dtype=float)
    classes = int(y.max()) + 1
    w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        p = predict_proba(w, b, x)
        w -= lr * x.T @ (p - onehot) / len(x)
        b -= lr * (p - onehot).mean(axis=0)
    return w, b
