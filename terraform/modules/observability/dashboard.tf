# The onsale at a glance, in CloudWatch: the waiting room, the write path, the change feed per
# region, the edges' cache, and the capacity behind them. grafana/onsale.json is the same view
# over Prometheus (tests/unit/terraform checks both name metrics the code exports).
#
# Each metric names its own region: the sidecars write every region's metrics there, and one
# widget can draw several regions. Counters are per-minute sums of the sidecars' deltas.

locals {
  ns  = var.metrics_namespace
  hub = var.hub_region

  widgets = [
    {
      title = "Waiting room: fans joining the queue per minute, by region"
      stat  = "Sum"
      metrics = [
        for r in var.regions : [local.ns, "tessera_edge_queue_joins_total", "tier", "edge", "region", r, { region = r, label = r }]
      ]
    },
    {
      title = "Waiting room: admitted writes passed to the writer per minute, by region"
      stat  = "Sum"
      metrics = [
        for r in var.regions : [local.ns, "tessera_edge_writer_requests_total", "tier", "edge", "region", r, { region = r, label = r }]
      ]
    },
    {
      title = "Waiting room: writes refused by admission per minute, by region"
      stat  = "Sum"
      metrics = [
        for r in var.regions : [local.ns, "tessera_edge_admission_refused_total", "tier", "edge", "region", r, { region = r, label = r }]
      ]
    },
    {
      title = "Holds and orders per minute (writer)"
      stat  = "Sum"
      metrics = [
        [local.ns, "tessera_holds_committed_total", "tier", "writer", "region", local.hub, { region = local.hub, label = "holds committed" }],
        [local.ns, "tessera_holds_rejected_total", "tier", "writer", "region", local.hub, { region = local.hub, label = "holds rejected" }],
        [local.ns, "tessera_orders_total", "tier", "writer", "region", local.hub, { region = local.hub, label = "orders" }],
      ]
    },
    {
      title = "Batch commit time, p50 and p99 (writer group commit)"
      stat  = "p99"
      metrics = [
        [local.ns, "tessera_batch_commit_duration_seconds", "tier", "writer", "region", local.hub, { region = local.hub, label = "p50", stat = "p50" }],
        [local.ns, "tessera_batch_commit_duration_seconds", "tier", "writer", "region", local.hub, { region = local.hub, label = "p99", stat = "p99" }],
      ]
    },
    {
      title = "Hold latency p99, POST .../holds (writer)"
      stat  = "p99"
      metrics = [
        [local.ns, "tessera_http_request_duration_seconds", "tier", "writer", "region", local.hub, "operation", "hold", { region = local.hub, label = "p99" }],
      ]
    },
    {
      title = "Change feed lag p99 per region (writer commit to applied on the read nodes)"
      stat  = "p99"
      metrics = [
        for r in var.regions : [local.ns, "tessera_feed_apply_lag_seconds", "tier", "regional", "region", r, { region = r, label = r }]
      ]
    },
    {
      title = "JetStream mirror lag per region (messages behind the hub)"
      stat  = "Maximum"
      metrics = [
        for r in local.mirrored : [local.ns, "tessera_mirror_lag_messages", "tier", "regional", "region", r, { region = r, label = r }]
      ]
    },
    {
      title = "Edge cache hit ratio per region (HIT + STALE of cacheable GETs, %)"
      stat  = "Sum"
      metrics = concat(
        [
          for i, r in var.regions : [{
            expression = "100 * (FILL(hit${i}, 0) + FILL(stale${i}, 0)) / IF(all${i} > 0, all${i}, 1)"
            label      = r
            id         = "ratio${i}"
          }]
        ],
        flatten([
          for i, r in var.regions : [
            [local.ns, "tessera_edge_cache_requests_total", "tier", "edge", "region", r, "outcome", "HIT", { region = r, id = "hit${i}", visible = false }],
            [local.ns, "tessera_edge_cache_requests_total", "tier", "edge", "region", r, "outcome", "STALE", { region = r, id = "stale${i}", visible = false }],
            [local.ns, "tessera_edge_cache_requests_total", "tier", "edge", "region", r, { region = r, id = "all${i}", visible = false }],
          ]
        ]),
      )
    },
    {
      title = "Outbox rows committed but not yet published (writer)"
      stat  = "Maximum"
      metrics = [
        [local.ns, "tessera_outbox_unpublished", "tier", "writer", "region", local.hub, { region = local.hub, label = "unpublished" }],
      ]
    },
    {
      title = "Running tasks per service (Container Insights)"
      stat  = "Average"
      metrics = [
        for key, s in var.services : ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", s.cluster_name, "ServiceName", s.service_name, { region = s.region, label = key }]
      ]
    },
    {
      title = "Valkey memory used per node (%)"
      stat  = "Maximum"
      metrics = [
        for id, node in local.redis_nodes : ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", id, { region = node.region, label = id }]
      ]
    },
  ]

  # Two widgets per row, half the dashboard's 24 columns each.
  dashboard_body = {
    widgets = concat(
      [{
        type       = "text"
        x          = 0
        y          = 0
        width      = 24
        height     = 2
        properties = { markdown = "## ${var.name_prefix}: onsale\nEvery alarm and what to do: docs/operations.md, \"Alarms\". The same view for Prometheus: terraform/modules/observability/grafana/onsale.json." }
      }],
      [
        for i, w in local.widgets : {
          type   = "metric"
          x      = (i % 2) * 12
          y      = 2 + floor(i / 2) * 6
          width  = 12
          height = 6
          properties = {
            title   = w.title
            view    = "timeSeries"
            region  = local.hub
            stat    = w.stat
            period  = 60
            metrics = w.metrics
          }
        }
      ],
    )
  }
}

resource "aws_cloudwatch_dashboard" "onsale" {
  region         = var.hub_region
  dashboard_name = "${var.name_prefix}-onsale"
  dashboard_body = jsonencode(local.dashboard_body)
}
