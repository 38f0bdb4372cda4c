# Written by hand so that it applies unchanged on Django 4.2 (InvenTree 303) and 5.2 (current).

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="EdgeAgent",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=200, unique=True)),
                ("version", models.CharField(blank=True, default="", max_length=50)),
                ("report_interval", models.PositiveIntegerField(default=30)),
                ("last_report", models.DateTimeField(null=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="EdgePrinter",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=100)),
                ("name", models.CharField(max_length=200)),
                ("driver", models.CharField(blank=True, default="", max_length=100)),
                ("status", models.PositiveIntegerField(default=101)),
                ("status_text", models.CharField(blank=True, default="", max_length=500)),
                ("properties", models.JSONField(default=list)),
                ("errors", models.JSONField(default=list)),
                ("present", models.BooleanField(default=True)),
                ("machine", models.UUIDField(null=True, unique=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="printers",
                        to="inventree_edge_plugin.edgeagent",
                    ),
                ),
            ],
            options={"unique_together": {("agent", "key")}},
        ),
        migrations.CreateModel(
            name="EdgeJob",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("unique_key", models.CharField(max_length=100, null=True, unique=True)),
                ("state", models.CharField(db_index=True, default="pending", max_length=20)),
                ("width_mm", models.FloatField(default=0)),
                ("height_mm", models.FloatField(default=0)),
                ("copies", models.PositiveIntegerField(default=1)),
                ("options", models.JSONField(default=dict)),
                ("username", models.CharField(blank=True, default="", max_length=150)),
                ("template", models.CharField(blank=True, default="", max_length=250)),
                ("data_output", models.PositiveIntegerField(null=True)),
                ("printed", models.PositiveIntegerField(default=0)),
                ("total", models.PositiveIntegerField(default=0)),
                ("message", models.TextField(blank=True, default="")),
                ("answered", models.BooleanField(default=False)),
                ("notified", models.BooleanField(default=False)),
                ("created", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                (
                    "printer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="jobs",
                        to="inventree_edge_plugin.edgeprinter",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="EdgeDocument",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("index", models.PositiveIntegerField()),
                ("data", models.BinaryField()),
                ("size", models.PositiveIntegerField()),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="documents",
                        to="inventree_edge_plugin.edgejob",
                    ),
                ),
            ],
            options={"unique_together": {("job", "index")}, "ordering": ["index"]},
        ),
    ]
