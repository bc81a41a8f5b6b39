"""Rollback alarms: the runbook's rollback criteria as CloudWatch alarms.

One alarm per criterion, all notifying one SNS topic, plus a composite alarm
that is in ALARM whenever any criterion is: the single signal ``rollback
verify`` and on-call watch. Thresholds come from config; the defaults are the
runbook's numbers (see ``infra.settings.AlarmThresholds``).

Everything here is created in us-east-1: CloudFront (and its Lambda@Edge
error) metrics exist only there, and a composite alarm and its SNS topic must
share the region of the alarms they watch. The program therefore requires the
database to be in us-east-1 as well (checked in ``infra.settings``). Each
resource names the region itself (pulumi-aws 7's per-resource ``region``) and
uses the default provider, so every ``aws:*`` setting of the stack applies.

The edge-errors alarm adds Lambda@Edge execution, validation and limit-exceeded
errors with ``FILL(m, 0)``: CloudFront publishes an error metric only for
minutes that had one, and a sum with a missing series is itself missing, which
would read as "not breaching".

The RDS alarms treat missing data as breaching: an instance that stopped, crashed or
was deleted publishes no ``DatabaseConnections`` or ``FreeStorageSpace`` at all, and
with "missing" the alarm would sit in INSUFFICIENT_DATA (which notifies nobody and the
composite alarm does not count) while the database is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.settings import MONITORING_REGION, AlarmThresholds

# Evaluate every minute and alarm on 3 bad minutes out of 5: fast enough for the
# runbook's "rollback within 15 minutes", tolerant of a single noisy minute.
PERIOD_SECONDS = 60
EVALUATION_PERIODS = 5
DATAPOINTS_TO_ALARM = 3
# Cache hit rate is noisy at low traffic; judge it over 15 minutes.
CACHE_HIT_PERIOD_SECONDS = 300
CACHE_HIT_EVALUATION_PERIODS = 3
EDGE_ERROR_QUERIES = ("executionErrors", "validationErrors", "limitErrors")


@dataclass
class AlarmsArgs:
    """Inputs of :class:`RollbackAlarms`."""

    name_prefix: str
    """Alarm names are ``<name_prefix>-<criterion>``; the CLI reads them from stack outputs."""
    distribution_id: pulumi.Input[str]
    db_instance_id: pulumi.Input[str]
    db_max_connections: int
    db_allocated_storage_gb: int
    thresholds: AlarmThresholds = field(default_factory=AlarmThresholds)
    alert_email: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class RollbackAlarms(pulumi.ComponentResource):
    """SNS topic, one alarm per rollback criterion, and the composite rollback alarm."""

    topic: aws.sns.Topic
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    composite: aws.cloudwatch.CompositeAlarm

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rollback:infra:RollbackAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        t = args.thresholds
        prefix = args.name_prefix

        self.topic = aws.sns.Topic(
            f"{name}-topic", name=f"{prefix}-rollback-alerts", region=MONITORING_REGION, tags=args.tags, opts=child
        )
        if args.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alert_email,
                region=MONITORING_REGION,
                opts=child,
            )
        actions = [self.topic.arn]

        cdn = {"DistributionId": args.distribution_id, "Region": "Global"}
        rds = {"DBInstanceIdentifier": args.db_instance_id}
        common: dict[str, object] = {
            "alarm_actions": actions,
            "ok_actions": actions,
            "region": MONITORING_REGION,
            "tags": args.tags,
            "opts": child,
        }
        per_minute: dict[str, object] = {
            "period": PERIOD_SECONDS,
            "evaluation_periods": EVALUATION_PERIODS,
            "datapoints_to_alarm": DATAPOINTS_TO_ALARM,
        }

        self.alarms = {}
        self.alarms["cdn-5xx-error-rate"] = aws.cloudwatch.MetricAlarm(
            f"{name}-cdn-5xx-error-rate",
            name=f"{prefix}-cdn-5xx-error-rate",
            alarm_description=f"Rollback criterion: CloudFront 5xx error rate > {t.error_rate_5xx_percent:g}%",
            namespace="AWS/CloudFront",
            metric_name="5xxErrorRate",
            dimensions=cdn,
            statistic="Average",
            comparison_operator="GreaterThanThreshold",
            threshold=t.error_rate_5xx_percent,
            treat_missing_data="notBreaching",
            **per_minute,
            **common,
        )
        self.alarms["cdn-origin-latency-p95"] = aws.cloudwatch.MetricAlarm(
            f"{name}-cdn-origin-latency-p95",
            name=f"{prefix}-cdn-origin-latency-p95",
            alarm_description=(
                f"Rollback criterion: p95 origin latency > {t.origin_latency_p95_ms / 1000:g} s "
                "(additional CloudFront metric)"
            ),
            namespace="AWS/CloudFront",
            metric_name="OriginLatency",
            dimensions=cdn,
            # In milliseconds. No `unit`: a unit the metric is not published with leaves the alarm
            # in INSUFFICIENT_DATA forever.
            extended_statistic="p95",
            comparison_operator="GreaterThanThreshold",
            threshold=t.origin_latency_p95_ms,
            treat_missing_data="notBreaching",
            **per_minute,
            **common,
        )
        self.alarms["cdn-cache-hit-rate"] = aws.cloudwatch.MetricAlarm(
            f"{name}-cdn-cache-hit-rate",
            name=f"{prefix}-cdn-cache-hit-rate",
            alarm_description=(
                f"Rollback criterion: cache hit rate < {t.cache_hit_rate_min_percent:g}% (additional CloudFront metric)"
            ),
            namespace="AWS/CloudFront",
            metric_name="CacheHitRate",
            dimensions=cdn,
            statistic="Average",
            comparison_operator="LessThanThreshold",
            threshold=t.cache_hit_rate_min_percent,
            period=CACHE_HIT_PERIOD_SECONDS,
            evaluation_periods=CACHE_HIT_EVALUATION_PERIODS,
            datapoints_to_alarm=CACHE_HIT_EVALUATION_PERIODS,
            treat_missing_data="notBreaching",
            **common,
        )
        self.alarms["edge-function-errors"] = aws.cloudwatch.MetricAlarm(
            f"{name}-edge-function-errors",
            name=f"{prefix}-edge-function-errors",
            alarm_description=(
                f"Rollback criterion: Lambda@Edge execution + validation + limit-exceeded errors > "
                f"{t.edge_errors_max:g} per minute on this distribution"
            ),
            metric_queries=[
                _cdn_metric("executionErrors", "LambdaExecutionError", cdn),
                _cdn_metric("validationErrors", "LambdaValidationError", cdn),
                _cdn_metric("limitErrors", "LambdaLimitExceededErrors", cdn),
                {
                    "id": "edgeErrors",
                    # A missing series (no error that minute) counts as 0, not as "no data".
                    "expression": " + ".join(f"FILL({m}, 0)" for m in EDGE_ERROR_QUERIES),
                    "label": "Lambda@Edge errors",
                    "return_data": True,
                },
            ],
            comparison_operator="GreaterThanThreshold",
            threshold=t.edge_errors_max,
            evaluation_periods=EVALUATION_PERIODS,
            datapoints_to_alarm=DATAPOINTS_TO_ALARM,
            treat_missing_data="notBreaching",
            **common,
        )
        connections_threshold = round(args.db_max_connections * t.db_connections_percent / 100)
        self.alarms["db-connections"] = aws.cloudwatch.MetricAlarm(
            f"{name}-db-connections",
            name=f"{prefix}-db-connections",
            alarm_description=(
                f"Rollback criterion: connection pool exhaustion, > {t.db_connections_percent:g}% of "
                f"max_connections ({connections_threshold} of {args.db_max_connections})"
            ),
            namespace="AWS/RDS",
            metric_name="DatabaseConnections",
            dimensions=rds,
            statistic="Maximum",
            comparison_operator="GreaterThanThreshold",
            threshold=connections_threshold,
            # A dead or deleted instance publishes nothing: that must be ALARM, not INSUFFICIENT_DATA.
            treat_missing_data="breaching",
            **per_minute,
            **common,
        )
        free_bytes = round(args.db_allocated_storage_gb * 1024**3 * t.db_free_storage_min_percent / 100)
        self.alarms["db-free-storage"] = aws.cloudwatch.MetricAlarm(
            f"{name}-db-free-storage",
            name=f"{prefix}-db-free-storage",
            alarm_description=(
                f"Rollback criterion: RDS free storage < {t.db_free_storage_min_percent:g}% "
                f"of {args.db_allocated_storage_gb} GiB"
            ),
            namespace="AWS/RDS",
            metric_name="FreeStorageSpace",
            dimensions=rds,
            statistic="Minimum",
            comparison_operator="LessThanThreshold",
            threshold=free_bytes,
            # A dead or deleted instance publishes nothing: that must be ALARM, not INSUFFICIENT_DATA.
            treat_missing_data="breaching",
            **per_minute,
            **common,
        )

        self.alarm_names = [alarm.name for alarm in self.alarms.values()]
        self.composite = aws.cloudwatch.CompositeAlarm(
            f"{name}-composite",
            alarm_name=f"{prefix}-rollback",
            alarm_description="In ALARM when any rollback criterion alarm is: consider rolling back",
            # Built from the alarms' outputs so the composite is created after them.
            alarm_rule=pulumi.Output.all(*self.alarm_names).apply(
                lambda names: " OR ".join(f'ALARM("{n}")' for n in names)
            ),
            alarm_actions=actions,
            ok_actions=actions,
            region=MONITORING_REGION,
            tags=args.tags,
            opts=child,
        )

        self.topic_arn = self.topic.arn
        self.composite_name = self.composite.alarm_name
        self.register_outputs(
            {
                "topicArn": self.topic_arn,
                "alarmNames": self.alarm_names,
                "compositeAlarmName": self.composite_name,
            }
        )


def _cdn_metric(query_id: str, metric_name: str, dimensions: dict[str, pulumi.Input[str]]) -> dict[str, object]:
    return {
        "id": query_id,
        "return_data": False,
        "metric": {
            "namespace": "AWS/CloudFront",
            "metric_name": metric_name,
            "dimensions": dimensions,
            "period": PERIOD_SECONDS,
            "stat": "Sum",
        },
    }
