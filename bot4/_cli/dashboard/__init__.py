"""``bot4 serve``: the operator's web dashboard, its JSON API, Prometheus metrics and control."""
