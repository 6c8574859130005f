#!/usr/bin/env python3
"""The platform port: how a guest test asks the host for a platform fault.

    platform.py --socket PATH --qmp PATH --card-pid PID --card-log FILE \\
        --card-socket PATH --card-device SPEC -- CARD_CMD...

qemu/vm.sh starts it beside QEMU (ZCOPY_PLATFORM_PORT=1); QEMU connects the
guest's virtio-serial port org.zcopy.platform to PATH. The card's process
(zcard-vhost, first started by vm.sh as CARD_CMD with pid PID) is killed and
started again from here, and the card is unplugged and plugged back in through
QEMU's monitor (QMP socket at --qmp).

Protocol: JSON lines, as on the card's control socket (docs/zcard-spec.md).
One object per line in, one per line out, in order: {"ok": true, "cmd": ...,
...} or {"ok": false, "cmd": ..., "error": "..."}.

    {"cmd":"ping"}        the card's pid (null when it is not running) and
                          whether the card is plugged in
    {"cmd":"card_kill"}   SIGKILL the card's process; answers once it is gone
    {"cmd":"card_start"}  start the card's process again, same command line
                          (same sockets, same storage file); answers once it
                          listens
    {"cmd":"unplug"}      QMP device_del of the card; answers once QEMU reports
                          DEVICE_DELETED (the guest let go of it), then drops
                          the card's vhost-user connection (chardev-remove)
    {"cmd":"replug"}      a fresh vhost-user connection to the card
                          (chardev-add) and QMP device_add of the same device

QEMU's vhost-user-test-device cannot reconnect to a restarted back end in
place (see docs/zcard-spec.md, "Reconnect and reset"), so a test that kills
the card's process gives the guest a new card with unplug and replug.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

WAIT = 60.0  # seconds any one step may take


class Failed(Exception):
    """A request that could not be done; its text goes back to the guest."""


def log(msg):
    print(f"platform: {msg}", file=sys.stderr, flush=True)


def parse_device(spec):
    """'driver,key=value,...' (QEMU's -device syntax) -> QMP device_add arguments."""
    driver, *props = spec.split(",")
    args = {"driver": driver}
    for p in props:
        key, _, value = p.partition("=")
        args[key] = int(value) if value.isdigit() else value
    return args


class Qmp:
    """One QMP session (QEMU serves one monitor client at a time)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(WAIT)
        self.sock.connect(path)
        self.file = self.sock.makefile("rw")
        self.events = []
        self._read()  # the greeting
        self.call("qmp_capabilities")

    def close(self):
        self.file.close()
        self.sock.close()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise Failed("QEMU closed its monitor")
        return json.loads(line)

    def call(self, command, **arguments):
        """Runs a command; returns its result or raises Failed with QEMU's error."""
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise Failed(f"{command}: {msg['error'].get('desc', msg['error'])}")
            elif "return" in msg:
                return msg["return"]

    def wait_event(self, name, device):
        deadline = time.monotonic() + WAIT
        while True:
            for ev in self.events:
                if ev["event"] == name and ev.get("data", {}).get("device") == device:
                    self.events.remove(ev)
                    return
            if time.monotonic() > deadline:
                raise Failed(f"no {name} for {device} within {WAIT:.0f} s")
            self.events.append(self._read())


class Platform:
    def __init__(self, args):
        self.args = args
        self.device = parse_device(args.card_device)
        self.chardev = self.device["chardev"]
        self.card_pid = args.card_pid
        self.child = None  # the card's process once started from here
        self.plugged = True
        self.lock = threading.Lock()

    # ---- the card's process ----

    def _card_alive(self):
        if self.card_pid is None:
            return False
        if self.child is not None:
            return self.child.poll() is None
        try:
            with open(f"/proc/{self.card_pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def card_kill(self):
        if not self._card_alive():
            raise Failed("the card's process is not running")
        pid = self.card_pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while self._card_alive():
            if time.monotonic() > deadline:
                raise Failed(f"the card's process {pid} outlived SIGKILL")
            time.sleep(0.02)
        if self.child is not None:
            self.child.wait()
        self.card_pid = None
        log(f"killed the card's process {pid}")
        return {"pid": pid}

    def card_start(self):
        if self._card_alive():
            raise Failed(f"the card's process {self.card_pid} is running")
        sock = self.args.card_socket
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        with open(self.args.card_log, "ab") as out:
            self.child = subprocess.Popen(self.args.card_cmd, stdout=out, stderr=out,
                                          stdin=subprocess.DEVNULL)
        self.card_pid = self.child.pid
        deadline = time.monotonic() + WAIT
        while not os.path.exists(sock):
            if self.child.poll() is not None:
                raise Failed(f"the card exited with {self.child.returncode} before listening "
                             f"(log: {self.args.card_log})")
            if time.monotonic() > deadline:
                raise Failed(f"the card did not listen on {sock} within {WAIT:.0f} s")
            time.sleep(0.02)
        log(f"started the card's process {self.card_pid}")
        return {"pid": self.card_pid}

    # ---- the card on QEMU's bus ----

    def unplug(self):
        if not self.plugged:
            raise Failed("the card is not plugged in")
        qmp = Qmp(self.args.qmp)
        try:
            qmp.call("device_del", id=self.device["id"])
            qmp.wait_event("DEVICE_DELETED", self.device["id"])
            self.plugged = False
            # The vhost-user connection goes with its chardev: the card then
            # waits for its next front end.
            qmp.call("chardev-remove", id=self.chardev)
        finally:
            qmp.close()
        log("card unplugged")
        return {}

    def replug(self):
        if self.plugged:
            raise Failed("the card is plugged in")
        qmp = Qmp(self.args.qmp)
        try:
            backend = {"type": "socket", "data": {
                "addr": {"type": "unix", "data": {"path": self.args.card_socket}},
                "server": False}}
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    qmp.call("chardev-add", id=self.chardev, backend=backend)
                    break
                except Failed as e:
                    # A card that has just bound its socket may not listen yet.
                    if time.monotonic() > deadline or not self._card_alive():
                        raise Failed(f"{e} (is the card running? card_start)") from None
                    time.sleep(0.1)
            try:
                qmp.call("device_add", **self.device)
            except Failed:
                qmp.call("chardev-remove", id=self.chardev)
                raise
            self.plugged = True
        finally:
            qmp.close()
        log("card plugged in")
        return {}

    def ping(self):
        return {"card_pid": self.card_pid if self._card_alive() else None,
                "plugged": self.plugged}

    def handle(self, line):
        req = {}
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or set(req) != {"cmd"}:
                raise Failed('a request is {"cmd": NAME} and nothing else')
            cmd = req["cmd"]
            fn = {"ping": self.ping, "card_kill": self.card_kill,
                  "card_start": self.card_start, "unplug": self.unplug,
                  "replug": self.replug}.get(cmd)
            if fn is None:
                raise Failed(f"unknown cmd {cmd!r}: ping, card_kill, card_start, unplug, replug")
            with self.lock:
                return {"ok": True, "cmd": cmd, **fn()}
        except json.JSONDecodeError as e:
            return {"ok": False, "error": f"bad request: {e}"}
        except (Failed, OSError) as e:
            return {"ok": False, "cmd": req.get("cmd"), "error": str(e)}

    def serve_client(self, conn):
        with conn, conn.makefile("rw") as f:
            for line in f:
                if not line.strip():
                    continue
                reply = self.handle(line)
                f.write(json.dumps(reply, sort_keys=True) + "\n")
                f.flush()

    def stop(self, *_):
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        sys.exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--card-pid", type=int, required=True)
    ap.add_argument("--card-log", required=True)
    ap.add_argument("--card-socket", required=True)
    ap.add_argument("--card-device", required=True)
    ap.add_argument("card_cmd", nargs="+")
    args = ap.parse_args()
    platform = Platform(args)
    signal.signal(signal.SIGTERM, platform.stop)
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(args.socket)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=platform.serve_client, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
