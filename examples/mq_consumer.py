"""A consumer for examples/mq_producer.lua, in Python.

    python examples/mq_consumer.py [NAME [WHO]]

Takes jobs (numbers) from /NAME until "stop", sends "<n> <n*n> <who>" to
/NAME-results, and prints the jobs it did.
"""
import sys

from ipc import mq

name = sys.argv[1] if len(sys.argv) > 1 else "luaipc-mqdemo"
who = sys.argv[2] if len(sys.argv) > 2 else "python"

with mq.open(name) as jobs, mq.open(name + "-results") as results:  # producer first
    results.send(f"hello {who}".encode())
    did = []
    for job in jobs.messages(stop=b"stop"):
        n = int(job)
        results.send(f"{n} {n * n} {who}".encode())
        did.append(n)
print(f"{who} did: " + " ".join(map(str, did)))
