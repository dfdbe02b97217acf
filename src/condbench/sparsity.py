"""The thresholds tau at which s(tau), the share of c's dimensions below tau, is reported unless a suite says
otherwise (torch-free: suites read it when they are validated)."""
DEFAULT_TAUS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
