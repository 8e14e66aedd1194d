"""The soak: a fleet cluster churned for minutes (add, touch, rm, kill -9, a bad file, `fleet reload --all`)
while keep-alive and new-connection clients send GETs and POSTs; it fails on an unexplained failed
request, memory or open files growing in fleet's long-lived processes, or a process left after
`fleet down`. `make soak` (10 minutes), `python -m soak --minutes N`; what counts as explained and as
growth: soak/verdict.py."""
