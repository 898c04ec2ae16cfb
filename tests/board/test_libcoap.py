"""Interop with an independent CoAP implementation: libcoap's coap-client talks to a virtual board."""

import shutil
import subprocess

import pytest

CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")


@pytest.mark.skipif(CLIENT is None, reason="libcoap's coap-client is not installed (apt-get install libcoap3-bin)")
def test_coap_client_reads_well_known_core(blind_board):
    uri = "coap://%s:%d/.well-known/core" % blind_board.address
    done = subprocess.run(
        [CLIENT, "-m", "get", "-B", "10", uri], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '</a/blind/move>;rt="pifleet.cmd";ct=50' in done.stdout


@pytest.mark.skipif(CLIENT is None, reason="libcoap's coap-client is not installed (apt-get install libcoap3-bin)")
def test_coap_client_runs_a_command(blind_board):
    uri = "coap://%s:%d/a/blind/move" % blind_board.address
    body = '{"eid": "libcoap-1", "params": {"direction": "up", "seconds": 0.2}}'
    done = subprocess.run(
        [CLIENT, "-m", "post", "-t", "50", "-e", body, "-B", "10", uri],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"stopped": "elapsed"' in done.stdout
