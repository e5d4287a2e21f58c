"""What the API says about images (issue 22, docs/images.md): the pre-flight's problems in a refusal and in the
plan, and the images report a registry's cleanup policy keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from upgrader.contract.base import Model, Timestamp


class ImageProblemView(Model):
    """One customer's image a deploy cannot start without (422 ImagesRefused lists every one)."""

    customer_id: str
    role: Literal["target", "rollback"] = Field(description="target: the new tag; rollback: the tag it runs now")
    image: str = Field(description="the image reference asked (`(none)`: no rollback image is known)")
    reason: str
    component: str | None = Field(
        default=None, description="the component whose image it is (a release train checks every one of its components)"
    )


class PlannedImages(Model):
    """The pre-flight of a plan or a deploy: every targeted customer's target and rollback image resolved to a
    digest in the registry, each distinct image once."""

    preflight: Literal["auto", "required", "off"] = Field(description="IMAGE_PREFLIGHT, as configured")
    checked: int = Field(description="customers whose images were resolved (a release train: of every component)")
    unchecked: int = Field(
        description="customers not checked: no image repository known for them (IMAGE_PREFLIGHT=auto; a release "
        "train: for one of its components), or all of them with the pre-flight off"
    )
    registry_requests: int = Field(
        description="distinct images resolved (one registry request each; a release train: over all its components)"
    )
    targets: dict[str, int] = Field(
        default_factory=dict,
        description="each target image (`repository:tag@digest`; a release train: of every component) and how many "
        "customers get it",
    )
    allow_no_rollback_image: bool = False
    problems: list[ImageProblemView] = Field(
        default_factory=list,
        description="missing or mutable images: a deploy is refused (422 ImagesRefused) unless they are all "
        "rollback images and allowNoRollbackImage is sent",
    )


class MovedTagView(Model):
    """A tag the upgrade pinned that named another digest (or nothing) when a later wave re-checked it. The
    waves keep installing the pinned digest (the upgrade halts when the registry lost that too); an `Image Tag
    Moved` event was sent once."""

    repository: str
    tag: str
    pinned_digest: str = Field(description="what the deploy resolved and every wave installs")
    current_digest: str | None = Field(description="what the tag named when re-checked; null: the tag is gone")
    pinned_digest_present: bool = Field(
        description="whether the registry still held the pinned digest; false: the upgrade halted before the wave"
    )
    wave: int = Field(description="the wave (0-based) before which it was found")
    customers: int = Field(description="that wave's customers pinned to it")
    detected_at: Timestamp


class FleetImage(Model):
    """One image digest some existing customer runs or needs for a rollback."""

    repository: str
    digest: str
    tags: list[str] = Field(description="the tags the customers know it by")
    running: int = Field(description="customers running it")
    rollback_for: int = Field(description="customers whose rollback installs it")
    customers: list[str] = Field(description="the customers running it or needing it (at most 100 named)")


class FleetImagesResponse(Model):
    """Every image digest still running or needed for a rollback: what a registry's cleanup policy must keep."""

    images: list[FleetImage]
    unresolved: int = Field(
        description="customer components whose image no deploy resolved to a digest (pre-flight off, repository "
        "unknown, or not upgraded since): their images cannot be named here"
    )
