import numpy as np


def standardize(x, mean, std):
    return np.asarray(x, dtype=float) - mean  # forgets to divide


def predict_proba(w, b, x):
    e = np.exp(np.asarray(x, dtype=float) @ w + b)
    return e / e.sum(axis=1, keepdims=True)


def fit(x, y, steps, lr):
    return np.zeros((x.shape[1], 3)), np.zeros(3)  # learns nothing
