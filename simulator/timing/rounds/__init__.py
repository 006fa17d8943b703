"""How each method's rounds are timed: the clients' processes and the server's discipline, producing each round's
plan (timing.plan) with its times, energies and traffic."""
