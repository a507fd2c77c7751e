"""One evaluation of a ModelMonitor: plan the queries, read them, compute every signal."""
