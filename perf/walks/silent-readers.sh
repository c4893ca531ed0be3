#!/usr/bin/env bash
# Silent readers against a gateway: 8 real nodes on 127.18.0.0/24, n1 with
# the gateway (on 127.18.0.1, or on $GW, e.g. GW=0.0.0.0 for a gateway
# others reach); 40 connections from 127.0.0.2 open downloads of a 30 MB
# file and read nothing; then curl, from 127.0.0.3, downloads a 2 MB file
# and says how long it took. Needs python3, curl, bc; $G is the grapevine
# binary (cargo build --release -p grapevine-cli). docs/gateway.md quotes it.
set -u
G=${G:-target/release/grapevine}
W=/tmp/walk20; pkill -f "grapevine run /tmp/walk20" 2>/dev/null; rm -rf $W; mkdir -p $W
for i in $(seq 1 8); do
  seed=""; [ $i -gt 1 ] && seed="--seed 127.18.0.1:7946"
  gw="--no-gateway"; [ $i -eq 1 ] && gw="--gateway ${GW:-127.18.0.1}:3456"
  $G init $W/n$i --listen 127.18.0.$i:7946 $seed --nickname n$i $gw >/dev/null
  ($G run $W/n$i > $W/n$i.log 2>&1 &)
done
for n in 1 2 3; do for t in $(seq 1 60); do
  c=$($G members --node $W/n$n 2>/dev/null | grep -c alive); [ "$c" -ge 8 ] && break; sleep 0.5
done; echo "members alive seen by n$n: $c"; done
head -c 30000000 /dev/urandom > $W/in
cap=$($G put $W/in --node $W/n2); echo "put: $cap"
head -c 2000000 /dev/urandom > $W/small
cap2=$($G put $W/small --node $W/n3); echo "put small: $cap2"
# 40 clients open downloads through n1's gateway and read nothing.
python3 - "$cap" > $W/silent.log 2>&1 <<'PY' &
import socket, sys, time
cap = sys.argv[1]
socks = []
for i in range(40):
    s = socket.create_connection(("127.18.0.1", 3456), source_address=("127.0.0.2", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /uri/{cap} HTTP/1.1\r\nHost: 127.18.0.1:3456\r\n\r\n".encode())
    socks.append(s)
print("40 silent downloads open", flush=True)
time.sleep(90)
PY
sleep 3
t0=$(date +%s.%N)
code=$(curl -s --interface 127.0.0.3 -o $W/out -w '%{http_code}' "http://127.18.0.1:3456/uri/$cap2")
t1=$(date +%s.%N)
echo "a download beside 40 silent ones: HTTP $code in $(echo "$t1 - $t0" | bc) s"; cmp $W/small $W/out && echo "identical"
kill %1 2>/dev/null
pkill -f "grapevine run $W"; echo done
