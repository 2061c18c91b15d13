"""The window with its MQTT source: set up through the dialog, fed by a real broker (amqtt in its
own process), shown in the fleet, the status bar and ``/status``."""

from __future__ import annotations

import aiohttp
import aiomqtt
import orjson
from PySide6.QtWidgets import QDialogButtonBox

from app.ui.mqtt_settings import MqttSettings
from tests.mqtt_broker import running_broker
from tests.ui.conftest import TOKEN, run, wait_until

MQTT_TOKEN = "window-mqtt-token"


async def publish(port: int, payloads: list[bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, username=MQTT_TOKEN, identifier="window-publisher") as client:
        for payload in payloads:
            await client.publish("flespi/message/gw/devices/77", payload, qos=1)


def fix(ident: str, i: int) -> bytes:
    return orjson.dumps({"ident": ident, "timestamp": 1_700_000_000 + i, "device.name": f"MQTT {ident}",
                         "position.latitude": 49.07 + i / 1e4, "position.longitude": 28.63, "position.speed": 30})


def test_the_dialog_starts_the_source_and_its_messages_reach_the_fleet(loop, make_window) -> None:
    window = make_window()
    with running_broker(token=MQTT_TOKEN) as broker:
        dialog = window.mqtt.open_dialog(window)
        dialog.enabled.setChecked(True)
        dialog.broker.setText(broker.url)
        dialog.topics.setPlainText("flespi/message/gw/devices/+\n")
        dialog.token.setText(MQTT_TOKEN)
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Save).click()

        async def scenario() -> dict:
            await wait_until(lambda: window.mqtt.source is not None and window.mqtt.source.state.phase == "connected",
                             what="the MQTT source to connect")
            assert window.mqtt.label.isVisible() and "connected" in window.mqtt.label.text()
            await publish(broker.port, [fix("mqtt-1", i) for i in range(30)] + [b"[]"] + [fix("mqtt-2", 0)])
            await wait_until(lambda: window.device_model.rowCount() == 2, what="both MQTT devices in the table")
            await wait_until(lambda: window.mqtt.source.stats.rejects == 1, what="the bad payload as a reject")
            url = window.urls()[0].rstrip("/") + "/status"
            async with aiohttp.ClientSession() as session, \
                    session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as reply:
                return orjson.loads(await reply.read())

        status = run(loop, scenario())
        assert window.live_fleet.devices["mqtt-1"].count == 30
        assert window.live_fleet.devices["mqtt-2"].name == "MQTT mqtt-2"
        assert status["mqtt"]["state"] == "connected" and status["mqtt"]["messages"] == 31
        assert "31 msgs" in window.mqtt.label.text()
        # Off again: the source stops and the label goes away.
        run(loop, window.mqtt.apply(MqttSettings(enabled=False)))
        assert window.mqtt.source is None and not window.mqtt.label.isVisible()


def test_a_refused_token_shows_red_in_the_status_bar(loop, make_window) -> None:
    window = make_window()
    with running_broker(token=MQTT_TOKEN) as broker:
        run(loop, window.mqtt.apply(MqttSettings(enabled=True, broker=broker.url, token="wrong")))
        run(loop, wait_until(lambda: window.mqtt.source.state.phase == "reconnecting", what="a refusal"))
        assert "token refused" in window.mqtt.label.text() and "b71c1c" in window.mqtt.label.styleSheet()
        assert "refused the credentials" in window.mqtt.label.toolTip()
        run(loop, window.mqtt.stop())


def test_a_bad_broker_url_is_refused_in_the_dialog(loop, make_window) -> None:
    window = make_window()
    dialog = window.mqtt.open_dialog(window)
    dialog.enabled.setChecked(True)
    dialog.broker.setText("http://mqtt.example")
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Save).click()
    assert dialog.isVisible() and "mqtt:// or mqtts://" in dialog.error.text()
    dialog.reject()
    assert window.mqtt.source is None


def test_unticking_recording_stops_the_mqtt_source_and_ticking_starts_it_again(loop, make_window) -> None:
    window = make_window()
    with running_broker(token=MQTT_TOKEN) as broker:
        run(loop, window.mqtt.apply(MqttSettings(enabled=True, broker=broker.url, token=MQTT_TOKEN)))
        run(loop, wait_until(lambda: window.mqtt.source.state.phase == "connected", what="connected"))
        window.recording_action.setChecked(False)
        run(loop, wait_until(lambda: window.service is None and window.mqtt.source is None
                             and not window.mqtt.label.isVisible(), what="listener and source to stop"))
        window.recording_action.setChecked(True)
        run(loop, wait_until(lambda: window.mqtt.source is not None and window.mqtt.source.state.phase == "connected",
                             what="the source to start again"))
        run(loop, window.mqtt.stop())
