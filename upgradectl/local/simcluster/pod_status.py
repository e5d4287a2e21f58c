"""What the simulated kubelet writes as a helm Job's pod status: Pending (unschedulable, or waiting for its
container with a reason), running, or terminated."""

from __future__ import annotations

from typing import Any

PENDING_MESSAGES = {
    "ContainerCreating": None,
    "ImagePullBackOff": 'Back-off pulling image "{image}"',
    "ErrImagePull": 'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found',
}
UNSCHEDULABLE = (
    "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)


def pod_conditions(ready: bool, stamp: str) -> list[dict[str, Any]]:
    state = "True" if ready else "False"
    unready = {} if ready else {"reason": "ContainersNotReady", "message": "containers with unready status: [helm]"}
    return [
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "ContainersReady", "status": state, "lastProbeTime": None, "lastTransitionTime": stamp, **unready},
        {"type": "Ready", "status": state, "lastProbeTime": None, "lastTransitionTime": stamp, **unready},
    ]


def container_status(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
    return {"name": container.get("name", "helm"), "image": container.get("image", ""), "imageID": "",
            "ready": ready, "restartCount": 0, "started": ready, "state": state}  # fmt: skip


def pending_pod_status(containers: list[dict[str, Any]], reason: str, stamp: str) -> dict[str, Any]:
    """The status of a pod Pending for `reason` ("Unschedulable", or its containers' waiting reason)."""
    if reason == "Unschedulable":
        status: dict[str, Any] = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE,
             "lastProbeTime": None, "lastTransitionTime": stamp}]}  # fmt: skip
    else:
        template = PENDING_MESSAGES.get(reason)
        waiting: dict[str, Any] = {"reason": reason}
        statuses = []
        for container in containers:
            if template:
                waiting = {"reason": reason, "message": template.format(image=container.get("image", ""))}
            statuses.append(container_status(container, {"waiting": dict(waiting)}, False))
        status = {"phase": "Pending", "startTime": stamp, "conditions": pod_conditions(False, stamp),
                  "containerStatuses": statuses}  # fmt: skip
    return status
