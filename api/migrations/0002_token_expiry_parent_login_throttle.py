"""Tokens expire and remember the token they were made with; failed logins are counted.

Tokens made before expiry existed end `token_ttl_days` after this migration runs: nobody is logged out by
an upgrade, and no token lives forever.
"""

from datetime import timedelta

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.utils import timezone


def expire_existing_tokens(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    token_model = apps.get_model("api", "ApiToken")
    expires = timezone.now() + timedelta(days=int(settings.DIRECTOR.token_ttl_days))
    token_model.objects.using(schema_editor.connection.alias).filter(expires__isnull=True).update(
        expires=expires
    )


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(expire_existing_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires",
            field=models.DateTimeField(),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="api.apitoken",
            ),
        ),
        migrations.CreateModel(
            name="LoginThrottle",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kind", models.CharField(max_length=8)),
                ("subject", models.CharField(max_length=150)),
                ("failures", models.IntegerField(default=0)),
                ("locked_until", models.DateTimeField(blank=True, null=True)),
                ("last_attempt", models.DateTimeField(db_index=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("kind", "subject"), name="login_throttle_subject")
                ],
            },
        ),
    ]
