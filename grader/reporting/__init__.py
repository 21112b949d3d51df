"""A class report of a batch (`grader report`): the numbers read from its gradebook
(`numbers`) and the figures drawn from them (`figures`); the page is
templates/report.html."""
