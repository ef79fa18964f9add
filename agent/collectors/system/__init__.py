"""System custom metrics (cpu, memory, swap, load, temperature, uptime, processes, users, fds, disk)."""
