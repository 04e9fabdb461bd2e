"""A faithful mempool.space simulator for demos and tests: `python -m exporter.sim`.

`mempool.SimulatedMempool` is what tests script. Inside: `model` (the Sans-I/O mempool, chain
and sequence), `session` (one WebSocket client), `rest` (REST answers), `server` and `electrs`
(the sockets), `auto` (the automatic mode), `builder`, `txmath`, `chain`, `bulk` (transactions,
fee maths, blocks, a cheap large tail), and `receiver` (a local notification receiver).
"""
