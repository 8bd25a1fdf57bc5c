"""Opens N keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, makes one request on each, keeps
them open, touches DONE_FILE once all are established, then waits to be killed."""
import socket
import sys
import time

port, count, done_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    held.append(s)
time.sleep(0.5)
open(done_file, "w").close()
while True:
    time.sleep(60)
