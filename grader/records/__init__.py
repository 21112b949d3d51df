"""What grading leaves for people: the gradebook and its exports."""
