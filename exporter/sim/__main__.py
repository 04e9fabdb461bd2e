"""`python -m exporter.sim`: serve a simulated mempool.space on loopback."""

from exporter.sim.mempool import main

main()
