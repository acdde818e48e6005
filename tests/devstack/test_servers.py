"""Tests of healthhut.devstack against the real mosquitto, influxd 1.6 and VictoriaMetrics binaries."""

from __future__ import annotations

import http.client
import queue
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from healthhut.devstack import (
    Influxd1,
    LocalStack,
    Mosquitto,
    ServerError,
    ServerRequestError,
    VictoriaMetrics,
    find_binary,
    free_port,
)

pytestmark = pytest.mark.timeout(60)


def _post(host: str, port: int, path: str, body: bytes) -> int:
    # http.client rather than urllib: it never consults http_proxy, so the request stays on loopback.
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class _MqttClient:
    """A paho client on a background loop that collects received messages in a queue."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self.client.on_subscribe = self._on_subscribe
        result = self.client.connect(broker.host, broker.port, keepalive=10)
        assert result == mqtt.MQTT_ERR_SUCCESS
        self.client.loop_start()

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: object, _mid: int, codes: list[ReasonCode], _props: object
    ) -> None:
        assert [code.is_failure for code in codes] == [False]
        self._subscribed.set()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _round_trip(broker: Mosquitto, topic: str, payload: bytes) -> mqtt.MQTTMessage:
    subscriber = _MqttClient(broker, "sub")
    publisher = _MqttClient(broker, "pub")
    try:
        subscriber.subscribe(topic)
        publisher.publish(topic, payload)
        return subscriber.messages.get(timeout=5)
    finally:
        publisher.close()
        subscriber.close()


@pytest.fixture(scope="module")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd1]:
    with Influxd1(tmp_path_factory.mktemp("influxd")) as server:
        yield server


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path_factory.mktemp("victoria")) as server:
        yield server


def test_find_binary_looks_in_sbin_even_without_it_in_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary("mosquitto") == Path("/usr/sbin/mosquitto")
    assert find_binary("influxd") == Path("/usr/bin/influxd")


def test_find_binary_raises_for_a_missing_program() -> None:
    with pytest.raises(ServerError, match="'healthhut-no-such-server' not found") as caught:
        find_binary("healthhut-no-such-server")
    assert caught.value.server == "healthhut-no-such-server"


def test_influxd_moves_both_listeners_and_keeps_its_files_in_its_folder(influxd: Influxd1) -> None:
    assert influxd.running
    assert influxd.url == f"http://127.0.0.1:{influxd.http_port}"
    assert influxd.http_port != influxd.rpc_port
    assert _listening(influxd.host, influxd.rpc_port)
    assert {p.name for p in influxd.root.iterdir()} >= {"influxdb.conf", "influxd.log", "meta", "data"}


def test_influxd_line_protocol_write_reads_back_exactly(influxd: Influxd1) -> None:
    influxd.create_database("hh")
    line = b'blood_pressure,hut=h1,subject=s1 systolic=120.5,pulse_rate=61i,flags="cuff_fit_loose" 1700000000123456789'
    assert _post(influxd.host, influxd.http_port, "/write?db=hh&precision=ns", line) == 204

    reply = influxd.query("SELECT * FROM blood_pressure", db="hh", epoch="ns")

    assert reply == {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "blood_pressure",
                        "columns": ["time", "flags", "hut", "pulse_rate", "subject", "systolic"],
                        "values": [[1700000000123456789, "cuff_fit_loose", "h1", 61, "s1", 120.5]],
                    }
                ],
            }
        ]
    }
    assert (influxd.root / "wal" / "hh").is_dir()


def test_influxd_same_point_written_twice_overwrites(influxd: Influxd1) -> None:
    influxd.create_database("idem")
    influxd.write("spo2,hut=h1 spo2=97 1700000000000000001", db="idem")
    influxd.write(["spo2,hut=h1 spo2=95 1700000000000000001"], db="idem")

    reply = influxd.query("SELECT spo2 FROM spo2", db="idem", epoch="ns")

    assert reply["results"][0]["series"][0]["values"] == [[1700000000000000001, 95]]


def test_influxd_query_errors_raise_with_status_and_body(influxd: Influxd1) -> None:
    with pytest.raises(ServerRequestError, match="database not found: nope") as not_found:
        influxd.query("SELECT * FROM x", db="nope")
    assert not_found.value.status == 200
    assert not_found.value.server == "influxd"

    with pytest.raises(ServerRequestError, match="HTTP 400") as bad_syntax:
        influxd.query("SELEKT 1")
    assert bad_syntax.value.status == 400
    assert "error parsing query" in bad_syntax.value.body


def test_influxd_fails_clearly_when_its_http_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        server = Influxd1(tmp_path, http_port=taken)

        with pytest.raises(ServerError) as caught:
            server.start()

    error = caught.value
    assert error.server == "influxd"
    assert error.returncode == 1
    assert f"listen tcp 127.0.0.1:{taken}: bind: address already in use" in error.log_tail
    assert f"command: {shlex.join(error.command)}" in str(error)
    assert error.command[1:3] == ("run", "-config")
    assert error.log_path == tmp_path / "influxd.log"
    assert not server.running


def test_victoria_v2_write_reads_back_truncated_to_ms(victoria: VictoriaMetrics) -> None:
    assert victoria.url == f"http://127.0.0.1:{victoria.port}"
    line = b'blood_pressure,hut=h1,subject=s1 systolic=120.5,pulse_rate=61i,flags="x" 1700000000123999999'
    assert _post(victoria.host, victoria.port, "/api/v2/write?precision=ns", line) == 204
    victoria.force_flush()

    series = sorted(victoria.export('{__name__=~"blood_pressure_.*"}'), key=lambda s: s["metric"]["__name__"])

    # The timestamp is cut to the millisecond (…123999999 ns becomes …123 ms, not …124), and the string
    # field becomes a series of zeros rather than being dropped.
    labels = {"hut": "h1", "subject": "s1"}
    ms = [1700000000123]
    assert series == [
        {"metric": {"__name__": "blood_pressure_flags", **labels}, "values": [0], "timestamps": ms},
        {"metric": {"__name__": "blood_pressure_pulse_rate", **labels}, "values": [61], "timestamps": ms},
        {"metric": {"__name__": "blood_pressure_systolic", **labels}, "values": [120.5], "timestamps": ms},
    ]
    systolic = {"__name__": "blood_pressure_systolic", **labels}
    assert victoria.query("blood_pressure_systolic", at=1700000000.5) == {
        "resultType": "vector",
        "result": [{"metric": systolic, "value": [1700000000.5, "120.5"]}],
    }


def test_victoria_same_point_written_twice_keeps_the_last(victoria: VictoriaMetrics) -> None:
    victoria.write("temp,hut=h1 temperature=36.6 1700000000000000000")
    victoria.write(["temp,hut=h1 temperature=37.2 1700000000000000000"])
    victoria.force_flush()

    metric = {"__name__": "temp_temperature", "hut": "h1"}
    assert victoria.export("temp_temperature") == [{"metric": metric, "values": [37.2], "timestamps": [1700000000000]}]


def test_mosquitto_publish_subscribe_round_trip(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        assert broker.host == "127.0.0.1"
        message = _round_trip(broker, "hh/v1/huts/h1/obs", b"\x00batch")
        assert (message.topic, message.payload, message.qos) == ("hh/v1/huts/h1/obs", b"\x00batch", 1)
        config = broker.config_path.read_text()
        assert f"listener {broker.port} 127.0.0.1\n" in config
        assert f"persistence_location {tmp_path / 'data'}/\n" in config
    assert not broker.running
    assert broker.returncode == 0
    assert "mosquitto version 2.0.11 terminating" in broker.log_path.read_text()


def test_mosquitto_restarts_on_the_same_port_with_its_persistence(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        port = broker.port
        publisher = _MqttClient(broker, "gateway")
        publisher.publish("hh/v1/huts/h1/status", b"online", retain=True)
        publisher.close()

        broker.stop()
        assert not _listening(broker.host, port)
        broker.start()

        assert broker.port == port
        reader = _MqttClient(broker, "reader")
        reader.subscribe("hh/v1/huts/h1/status")
        retained = reader.messages.get(timeout=5)
        reader.close()
        assert (retained.payload, retained.retain) == (b"online", True)

        broker.kill()
        assert broker.returncode == -9
        assert not broker.running
        broker.start()

        assert broker.port == port
        assert _round_trip(broker, "hh/v1/huts/h1/obs", b"after crash").payload == b"after crash"


def test_mosquitto_bad_config_line_raises_with_the_log_tail(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, extra_config=["healthhut_bogus_option 1"])

    with pytest.raises(ServerError) as caught:
        broker.start()

    error = caught.value
    assert (error.server, error.returncode) == ("mosquitto", 3)
    assert 'Error: Unknown configuration variable "healthhut_bogus_option".' in error.log_tail
    assert "last log lines:" in str(error)


def test_a_port_taken_before_start_is_replaced_by_a_new_one(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    chosen = broker.port
    with socket.socket() as squatter:
        # Another process taking the port between our pick and the broker's bind: the broker must not
        # mistake the squatter's socket for its own, and must move to a new port.
        squatter.bind(("127.0.0.1", chosen))
        squatter.listen()
        with broker:
            assert broker.port != chosen
            assert _round_trip(broker, "t", b"x").payload == b"x"
    assert "Address already in use" in broker.log_path.read_text()


def test_two_stacks_at_once_use_different_ports_and_clean_up() -> None:
    with LocalStack() as first, LocalStack() as second:
        ports = [
            port
            for stack in (first, second)
            for port in (
                stack.mosquitto.port,
                stack.influxd.http_port,
                stack.influxd.rpc_port,
                stack.victoria.port,
            )
        ]
        assert len(set(ports)) == 8
        assert first.root != second.root
        assert all(server.running for server in first.servers + second.servers)
        assert first.influxd.root == first.root / "influxd"
        assert _post(second.victoria.host, second.victoria.port, "/api/v2/write", b"m v=1 1") == 204
        roots = (first.root, second.root)
    assert not any(root.exists() for root in roots)
    assert not any(server.running for server in first.servers + second.servers)


def test_stack_with_a_subset_and_a_given_root(tmp_path: Path) -> None:
    with LocalStack(tmp_path, mosquitto=False, victoria=False) as stack:
        assert [type(server) for server in stack.servers] == [Influxd1]
        assert stack.root == tmp_path
        with pytest.raises(ServerError, match="mosquitto is not part of this stack"):
            _ = stack.mosquitto
    assert (tmp_path / "influxd" / "influxd.log").exists()


def test_stack_stops_the_others_when_one_fails_to_start() -> None:
    stack = LocalStack(mosquitto_config=["healthhut_bogus_option 1"])

    with pytest.raises(ServerError) as caught:
        stack.start()

    assert caught.value.server == "mosquitto"
    assert [server.running for server in stack.servers] == [False, False, False]
    assert not stack.servers[0].root.parent.exists()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
