"""Course kit and autograder for the frozen-VGG16 transfer-learning exercise."""
__version__ = "0.1.0"
