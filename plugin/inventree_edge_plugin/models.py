"""The plugin's own tables: agents, their printers, print jobs and their documents.

These rows are the truth. InvenTree's machine state (status, text, errors) lives in Django's
cache, which is per process without Redis, so it is rebuilt from these rows (see mirror.py).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DenyByDefault:
    """Only the plugin's own views read or write these rows.

    Current InvenTree asks a plugin model for permission when no role covers it; nothing in
    InvenTree's own API lists these tables, so every request is refused.
    """

    @classmethod
    def check_user_permission(cls, user, permission) -> bool:
        return False


class EdgeAgent(DenyByDefault, models.Model):
    name = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.CharField(max_length=50, blank=True, default="")
    report_interval = models.PositiveIntegerField(default=30)
    last_report = models.DateTimeField(null=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class EdgePrinter(DenyByDefault, models.Model):
    agent = models.ForeignKey(EdgeAgent, on_delete=models.CASCADE, related_name="printers")
    key = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    driver = models.CharField(max_length=100, blank=True, default="")
    status = models.PositiveIntegerField(default=101)
    status_text = models.CharField(max_length=500, blank=True, default="")
    properties = models.JSONField(default=list)
    errors = models.JSONField(default=list)
    present = models.BooleanField(default=True)
    # The InvenTree machine (machine.MachineConfig pk) that shows this printer.
    machine = models.UUIDField(null=True, unique=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        unique_together = [("agent", "key")]

    def __str__(self) -> str:
        return f"{self.agent.name} / {self.name}"


class EdgeJob(DenyByDefault, models.Model):
    PENDING = "pending"
    FETCHED = "fetched"
    ACCEPTED = "accepted"
    PRINTING = "printing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FINAL = (DONE, FAILED, CANCELLED)
    UNACCEPTED = (PENDING, FETCHED)

    # The integer pk is what InvenTree's notification bookkeeping needs (NotificationEntry.uid).
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    printer = models.ForeignKey(EdgePrinter, on_delete=models.CASCADE, related_name="jobs")
    # "DataOutput:<pk>" or "LabelOutput:<pk>": a retried worker task finds its job again.
    unique_key = models.CharField(max_length=100, unique=True, null=True)
    state = models.CharField(max_length=20, default=PENDING, db_index=True)
    width_mm = models.FloatField(default=0)
    height_mm = models.FloatField(default=0)
    copies = models.PositiveIntegerField(default=1)
    options = models.JSONField(default=dict)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="")
    template = models.CharField(max_length=250, blank=True, default="")
    data_output = models.PositiveIntegerField(null=True)
    printed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    # True once InvenTree has answered the user who printed: outcomes after that reach the
    # user as a notification. `notified` makes that notification happen once.
    answered = models.BooleanField(default=False)
    notified = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"job {self.uid} ({self.state})"


class EdgeDocument(DenyByDefault, models.Model):
    job = models.ForeignKey(EdgeJob, on_delete=models.CASCADE, related_name="documents")
    index = models.PositiveIntegerField()
    data = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        unique_together = [("job", "index")]
        ordering = ["index"]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.index}"
