"""Thinger permission trees: allow/deny matching (pure, no server)."""

from __future__ import annotations

from iotmp.server.auth import new_stored_token
from iotmp.server.permissions import Scope, permits, tree_matches


def test_tree_matching() -> None:
    tree = {
        "Device": {
            "lamp": ["AccessDeviceResources", "Read*"],
            "plug": [{"relay": ["AccessDeviceResources"]}],
        },
        "Bucket": {"*": "ReadBucket"},
    }
    assert tree_matches(tree, Scope("Device", "lamp", "AccessDeviceResources", "led"))
    assert tree_matches(tree, Scope("Device", "lamp", "ReadDeviceStatus"))
    assert not tree_matches(tree, Scope("Device", "lamp", "DeleteDevice"))
    assert not tree_matches(tree, Scope("Device", "other", "ReadDeviceStatus"))
    # a sub-resource list limits the action to those resources
    assert tree_matches(tree, Scope("Device", "plug", "AccessDeviceResources", "relay"))
    assert not tree_matches(tree, Scope("Device", "plug", "AccessDeviceResources", "power"))
    assert not tree_matches(tree, Scope("Device", "plug", "AccessDeviceResources"))
    assert tree_matches(tree, Scope("Bucket", "any", "ReadBucket"))
    assert tree_matches({"*": {"*": "*"}}, Scope("Token", "t", "DeleteToken"))
    assert not tree_matches({}, Scope("Device", "lamp", "ReadDeviceStatus"))
    assert not tree_matches(None, Scope("Device", "lamp", "ReadDeviceStatus"))
    assert not tree_matches({"Device": "lamp"}, Scope("Device", "lamp", "ReadDeviceStatus"))


def test_deny_wins_and_device_tokens() -> None:
    token = new_stored_token(
        "alice", "t", allow={"*": {"*": "*"}}, deny={"Device": {"lamp": ["DeleteDevice"]}}
    )
    assert permits(token, Scope("Device", "lamp", "UpdateDevice"))
    assert not permits(token, Scope("Device", "lamp", "DeleteDevice"))
    assert permits(token, Scope("Device", "plug", "DeleteDevice"))
    device_token = new_stored_token("alice", "d", device="lamp", resources=["temp"])
    assert permits(device_token, Scope("Device", "lamp", "AccessDeviceResources", "temp"))
    assert not permits(device_token, Scope("Device", "lamp", "AccessDeviceResources", "led"))
    assert permits(device_token, Scope("Device", "lamp", "ReadDeviceStatus"))
    assert not permits(device_token, Scope("Device", "lamp", "DeleteDevice"))
    assert not permits(device_token, Scope("Device", "plug", "ReadDeviceStatus"))
