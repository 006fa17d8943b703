"""When things happen: SimPy processes and closed-form schedules of devices, links and the server."""
