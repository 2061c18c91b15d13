"""A fleet of simulated trackers that move plausibly and report like flespi devices.

Vehicles drive along a street grid (turning at intersections), accelerate, stop at junctions,
park with the ignition off, drain and charge batteries, and occasionally report bad fixes
(0/0, ``position.valid: false``, missing position, few satellites) — the things an engineer
bringing up a tracker needs to see handled. Pure and deterministic for a given seed.

A fleet of nine or more has a few clearly broken trackers among healthy ones (`FAULTS`), so
that the demo shows what a problem looks like next to normal noise: one that never gets a fix,
one whose position jumps kilometres away and back, and one that goes silent for minutes at a time.

What the messages carry, and what is documented by flespi (flespi.com/kb/messages-basic-information-units,
read 2026-11) versus assumed:

* documented: ``ident``; ``timestamp`` (device time) and ``server.timestamp`` (when flespi got it),
  Unix time with the microseconds as a fraction; ``channel.id``, ``protocol.id``, ``peer`` (the
  IP:port the tracker connected from); ``device.id``, ``device.name``, ``device.type.id`` for a
  registered device;
* assumed: that trackers reporting whole seconds arrive with integer timestamps (here: two
  vehicles in three when a vehicle reports at most once a second); indexed parameters spelled
  ``name#N`` (``ain#1``, ``temperature#2``), as protocol parameter lists show them; a tracker out
  of coverage keeping its messages and uploading them late, in order, on a new connection (a new
  ``peer`` port), each with the device time it was recorded at and the server time of the upload
  (``buffered_rate``: the chance per message that a vehicle loses coverage).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

#: Default centre: the coordinates of flespi's own example message.
DEFAULT_CENTER = (49.069782, 28.632826)
BLOCK_M = 400.0  # street grid spacing
_M_PER_DEG_LAT = 111_320.0
_HEADINGS = (0.0, 90.0, 180.0, 270.0)
_NAMES = ("Truck", "Van", "Bus", "Courier", "Tractor", "Taxi", "Ambulance", "Loader")
#: Vehicle number (0-based) → its fault, in fleets of at least FAULTY_FLEET vehicles.
FAULTS: dict[int, str] = {2: "no_fix", 5: "jumps", 8: "silent"}
FAULTY_FLEET = max(FAULTS) + 1  # every faulty vehicle exists
JUMP_EVERY = 12  # the jumping tracker reports a position ~3 km off every this many messages
SILENT_CYCLE = (60.0, 150.0)  # the silent tracker: reports for this long, then is silent for this long


@dataclass(slots=True)
class _Vehicle:
    ident: str
    name: str
    x: float  # metres east of the centre
    y: float  # metres north of the centre
    heading: float
    to_corner: float
    speed: float  # km/h
    cruise: float
    pause: float  # seconds left standing still
    ignition: bool
    battery: float
    mileage: float
    satellites: int
    fault: str = ""  # "" (healthy) or one of FAULTS' values
    reports: int = 0
    # How it reaches flespi (see the module doc): set by `FleetSimulator._wire`.
    device_id: int = 0
    peer: str = ""
    whole_seconds: bool = False
    offline: int = 0  # messages still to be kept before coverage returns
    held: list[dict[str, Any]] = field(default_factory=list)


class FleetSimulator:
    """Generates messages in flespi's flat notation, round-robin over ``devices`` vehicles."""

    def __init__(self, devices: int, *, seed: int = 1, start: float, interval: float = 5.0,
                 center: tuple[float, float] = DEFAULT_CENTER, bad_fix_rate: float = 0.01,
                 faulty: bool = True, buffered_rate: float = 0.0) -> None:
        if devices < 1:
            raise ValueError("need at least one device")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.rng = random.Random(seed)
        self.interval = interval
        self.start = start
        self.center = center
        self.bad_fix_rate = bad_fix_rate
        self.produced = 0  # messages handed out by `next_messages`
        self._turn = 0  # round-robin position (a silent tracker's turn passes to the next one)
        self.vehicles = [self._new_vehicle(i) for i in range(devices)]
        if faulty and devices >= FAULTY_FLEET:
            for number, fault in FAULTS.items():
                self.vehicles[number].fault = fault
        # Delivery details draw from their own generator, so the motion stays what it was.
        self.buffered_rate = buffered_rate
        self._wire_rng = random.Random(seed * 7919 + 1)
        self._generated = 0  # messages recorded by the vehicles (some held back while offline)
        self._late: list[dict[str, Any]] = []  # uploaded after a coverage gap, due out next
        for number, vehicle in enumerate(self.vehicles):
            self._wire(vehicle, number)

    def _new_vehicle(self, number: int) -> _Vehicle:
        rng = self.rng
        spread = 12
        return _Vehicle(
            ident=f"{352625000000000 + number * 7919:015d}",
            name=f"{_NAMES[number % len(_NAMES)]} {number + 1:03d}",
            x=rng.randint(-spread, spread) * BLOCK_M, y=rng.randint(-spread, spread) * BLOCK_M,
            heading=rng.choice(_HEADINGS), to_corner=BLOCK_M, speed=0.0,
            cruise=rng.uniform(30.0, 80.0), pause=rng.uniform(0.0, 30.0), ignition=True,
            battery=rng.uniform(60.0, 100.0), mileage=rng.uniform(1_000.0, 90_000.0),
            satellites=rng.randint(8, 18))

    def next_messages(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` messages as flespi would deliver them. The vehicles record message
        k at ``start + k * interval / devices``; with ``buffered_rate``, a vehicle out of coverage
        holds its messages and they come out later, after newer ones of other vehicles."""
        step = self.interval / len(self.vehicles)
        out: list[dict[str, Any]] = []
        while len(out) < count:
            if self._late:
                out.append(self._late.pop(0))
                continue
            ts = self.start + self._generated * step
            vehicle = self._next_vehicle(ts)
            self._advance(vehicle, self.interval)
            message = self._delivered(vehicle, self._report(vehicle, ts))
            self._generated += 1
            if vehicle.offline == 0 and self.buffered_rate and self._wire_rng.random() < self.buffered_rate:
                vehicle.offline = self._wire_rng.randint(3, 40)  # coverage lost for this many reports
            if vehicle.offline == 0:
                out.append(message)
                continue
            vehicle.held.append(message)
            vehicle.offline -= 1
            if vehicle.offline == 0:  # back in coverage: upload everything held, oldest first
                self._upload(vehicle, message["server.timestamp"])
        self.produced += len(out)
        return out
    def _next_vehicle(self, ts: float) -> _Vehicle:
        """Whose turn it is; a silent tracker's turn goes to the next vehicle."""
        vehicles = self.vehicles
        on, off = SILENT_CYCLE
        while True:
            vehicle = vehicles[self._turn % len(vehicles)]
            self._turn += 1
            if vehicle.fault != "silent" or (ts - self.start) % (on + off) < on:
                return vehicle

    def _wire(self, v: _Vehicle, number: int) -> None:
        """How vehicle ``number`` reaches flespi: its device id, connection and clock."""
        v.device_id = 4_100_000 + number * 13
        v.peer = f"10.{number // 250 % 250}.{number % 250}.{self._wire_rng.randint(2, 250)}:" \
                 f"{self._wire_rng.randint(20000, 60000)}"
        v.whole_seconds = number % 3 != 0 and self.interval >= 1.0

    def _delivered(self, v: _Vehicle, message: dict[str, Any]) -> dict[str, Any]:
        """The fields flespi adds (and the clock the tracker keeps) on a reported message."""
        if v.whole_seconds:
            message["timestamp"] = int(message["timestamp"])
        message["device.id"] = v.device_id
        message["peer"] = v.peer
        message["temperature#1"] = round(18.0 + 6.0 * math.sin(message["timestamp"] / 3600.0), 1)
        message["temperature#2"] = round(4.0 + self._wire_rng.gauss(0, 0.3), 1)
        return message

    def _upload(self, v: _Vehicle, at: float) -> None:
        """Release what ``v`` held: received by flespi now, over a new connection."""
        host, _port = v.peer.rsplit(":", 1)
        v.peer = f"{host}:{self._wire_rng.randint(20000, 60000)}"
        for index, message in enumerate(v.held):
            message["server.timestamp"] = round(at + 0.001 * (index + 1), 6)
            message["peer"] = v.peer
        self._late.extend(v.held)
        v.held = []

    def _advance(self, v: _Vehicle, dt: float) -> None:
        rng = self.rng
        if v.pause > 0.0:
            v.pause -= dt
            v.speed = 0.0
            v.battery = min(100.0, v.battery + (0.02 if v.ignition else -0.005) * dt)
            if v.pause <= 0.0:
                v.ignition = True
                v.cruise = rng.uniform(30.0, 80.0)
            return
        v.speed += max(-20.0, min(12.0, v.cruise - v.speed)) * min(1.0, dt / 5.0) + rng.gauss(0, 2)
        v.speed = max(3.0, min(130.0, v.speed))
        travel = v.speed / 3.6 * dt
        while travel > 0.0:
            leg = min(travel, v.to_corner)
            rad = math.radians(v.heading)
            v.x += leg * math.sin(rad)
            v.y += leg * math.cos(rad)
            v.mileage += leg / 1000.0
            v.to_corner -= leg
            travel -= leg
            if v.to_corner <= 1e-6:
                v.to_corner = BLOCK_M
                v.heading = (v.heading + rng.choice((0.0, 0.0, 90.0, -90.0))) % 360.0
                if rng.random() < 0.15:  # junction: wait at the lights
                    v.pause, travel = rng.uniform(10.0, 60.0), 0.0
                elif rng.random() < 0.03:  # park with the engine off
                    v.pause, v.ignition, travel = rng.uniform(120.0, 600.0), False, 0.0
        v.battery = min(100.0, v.battery + 0.01 * dt)
        v.satellites = max(5, min(22, v.satellites + rng.choice((-1, 0, 0, 0, 1))))

    def _report(self, v: _Vehicle, ts: float) -> dict[str, Any]:
        rng = self.rng
        lat0, lon0 = self.center
        lat = lat0 + v.y / _M_PER_DEG_LAT
        lon = lon0 + v.x / (_M_PER_DEG_LAT * math.cos(math.radians(lat0)))
        moving = v.speed > 0.0
        message: dict[str, Any] = {
            "ident": v.ident,
            "timestamp": round(ts, 3),
            "server.timestamp": round(ts + rng.uniform(0.2, 1.5), 6),
            "position.latitude": round(lat + rng.gauss(0, 2e-6), 6),
            "position.longitude": round(lon + rng.gauss(0, 2e-6), 6),
            "position.altitude": round(270.0 + v.y / 400.0 + rng.gauss(0, 1.5), 1),
            "position.speed": round(v.speed if moving else 0.0, 1),
            "position.direction": v.heading,
            "position.satellites": v.satellites,
            "position.hdop": round(max(0.5, 12.0 / v.satellites + rng.gauss(0, 0.1)), 2),
            "position.valid": True,
            "device.name": v.name,
            "device.type.id": 123,
            "channel.id": 1111,
            "protocol.id": 10,
            "engine.ignition.status": v.ignition,
            "movement.status": moving,
            "external.powersource.voltage": round(13.8 if v.ignition else 12.4 + rng.gauss(0, 0.05), 2),
            "battery.level": int(v.battery),
            "battery.voltage": round(3.5 + v.battery / 150.0, 3),
            "gsm.signal.level": rng.randint(40, 100),
            "vehicle.mileage": round(v.mileage, 3),
            "ain#1": round(rng.uniform(0.0, 0.2) + (12.0 if v.ignition else 0.0), 2),
            "din": 1 if v.ignition else 0,
            "custom.state": "driving" if moving else ("parked" if not v.ignition else "stopped"),
        }
        if self.bad_fix_rate and rng.random() < self.bad_fix_rate:
            kind = rng.randrange(4)
            if kind == 0:
                message["position.latitude"] = message["position.longitude"] = 0.0
            elif kind == 1:
                message["position.valid"] = False
            elif kind == 2:
                for key in ("position.latitude", "position.longitude"):
                    del message[key]
            else:
                message["position.satellites"] = 2
                message["position.hdop"] = 9.9
        v.reports += 1
        if v.fault == "no_fix":  # antenna unplugged: reports go on, never with a usable fix
            message["position.valid"] = False
            message["position.satellites"] = rng.randint(0, 2)
            message["position.hdop"] = 25.0
        elif v.fault == "jumps" and v.reports % JUMP_EVERY == 0:  # a fix ~3 km off, then back
            message["position.latitude"] = round(message.get("position.latitude", lat) + 0.03, 6)
        return message


def nest(message: dict[str, Any], keep_flat: tuple[str, ...] = ("external.powersource.voltage",)) -> dict[str, Any]:
    """Rewrite a flat message the way a flespi ``convert_message`` mapping nests it.

    Keys in ``keep_flat`` stay dotted, giving the mixed shape seen in real mappings.
    """
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in keep_flat or "." not in key:
            out[key] = value
            continue
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out
