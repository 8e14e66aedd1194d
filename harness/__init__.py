"""The one harness that tests, bench and soak share: a real cluster (`cluster`), `free_port` (`ports`), the
deadline wait (`wait`), the load generator that records every request (`load`, over `http` or requests),
and the process tools (`procs`). Not part of the shipped package."""
