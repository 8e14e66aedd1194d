"""The one harness that tests, bench and soak share: a real cluster (`cluster`), `free_port` (`ports`), the
deadline wait (`wait`), the load generator that records every request (`load`, over `http` or requests),
the process tools (`procs`), and the stamped results files of bench and soak (`evidence`). Not part of the
shipped package."""
