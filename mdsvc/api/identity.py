# -*- test-case-name: tests.test_api_tokens -*-
"""
AWS's instance identity document (C{/<version>/dynamic/instance-identity/document}), from what
Nova knows of an instance.

Nova serves no C{dynamic} tree; AWS does, and a token-first client on AWS reads it: cloud-init's
EC2 datasource in IMDSv2 mode will not use a metadata service without it.  So with session
tokens on (C{[api] imds_tokens}, the AWS-like mode) the EC2 tree of the versions that have it
(2009-04-04 and C{latest}) carries C{dynamic/instance-identity/document}; with tokens off the
trees stay exactly Nova's.

What AWS states and Nova does not know (architecture, region, billing and product codes) is
C{null}; the rest comes from the same values as the EC2 C{meta-data} tree.
"""

from __future__ import annotations

import json
from typing import Any

from mdsvc.api.ec2 import ec2_id, image_ec2_id
from mdsvc.model import Instance

DOCUMENT_VERSION = "2017-09-30"
"""The C{version} field AWS's documents carry."""


def identity_document(instance: Instance) -> dict[str, Any]:
    """The identity document's fields, in AWS's order."""
    v4 = [f.ip for f in instance.fixed_ips() if f.subnet.ip_version == 4]
    return {
        "accountId": instance.project_id,
        "architecture": None,
        "availabilityZone": instance.availability_zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": image_ec2_id(instance, instance.image_id, "ami"),
        "instanceId": ec2_id("i", instance.ec2_instance_id),
        "instanceType": instance.flavor.name if instance.flavor else None,
        "kernelId": image_ec2_id(instance, instance.kernel_id, "aki"),
        "pendingTime": instance.created_at,
        "privateIp": v4[0] if v4 else None,
        "ramdiskId": image_ec2_id(instance, instance.ramdisk_id, "ari"),
        "region": None,
        "version": DOCUMENT_VERSION,
    }


def identity_tree(instance: Instance) -> dict[str, Any]:
    """The C{dynamic} entry of an EC2 version's tree: C{instance-identity/document} as AWS formats it."""
    document = json.dumps(identity_document(instance), indent=2, separators=(",", " : ")).encode("utf-8")
    return {"instance-identity": {"document": document}}


__all__ = ["DOCUMENT_VERSION", "identity_document", "identity_tree"]
