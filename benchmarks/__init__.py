"""`make bench`: timings of the program, the policy pack and the engine (issue 6)."""
