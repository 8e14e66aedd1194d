"""`make chaos` (`python -m chaos`): kill each part of a running fleet several times under GET and POST load,
keep-alive and new-connection, and write what each kind of kill cost (failed requests, time until every
backend is routed again, worst latency) as a stamped results file and a markdown table generated from it.
Not part of the shipped package."""
