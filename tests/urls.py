from django.urls import path

from django_sse.metrics import metrics_view
from django_sse.redisqueue import RedisQueueView
from tests.support.stats import stats

from . import views

urlpatterns = [
    path("ticks/", views.TickView.as_view(), name="ticks"),
    path("owned-ticks/", views.OwnedTickView.as_view()),
    path("ticks-fast-heartbeat/", views.TickView.as_view(heartbeat_interval=0.2)),
    path("blocked/", views.BlockedView.as_view(heartbeat_interval=0.3)),
    path("async-blocked/", views.AsyncBlockedView.as_view(heartbeat_interval=0.3)),
    path("async-ticks/", views.AsyncTickView.as_view()),
    path("stream1/", RedisQueueView.as_view(redis_channel="foo"), name="stream1"),
    path("events/<str:channel>/", views.ChannelView.as_view(), name="channel"),
    path("multi/", views.MultiChannelView.as_view(), name="multi"),
    path("owned-events/<str:channel>/", views.OwnedChannelView.as_view()),
    path("async-staff/<str:channel>/", views.AsyncStaffChannelView.as_view()),
    path("staff-events/<str:channel>/", views.StaffChannelView.as_view()),
    path("state/<str:channel>/", views.InitialStateView.as_view()),
    path("guarded/", views.GuardedChannelView.as_view()),
    path("worker-events/<str:channel>/", views.WorkerChannelView.as_view()),
    path("publish/", views.publish),
    path("stats/", stats),
    path("plain/", views.plain),
    path("eventsource-page/", views.eventsource_page),
    path("echo/", views.echo),
    path("echo/<path:rest>", views.echo),
    path("overlong/", views.overlong),
    path("header-from-query/", views.header_from_query),
    path("late/", views.LateView.as_view()),
    path("ticks-short-life/", views.TickView.as_view(max_lifetime=0.5, heartbeat_interval=0.1)),
    path("metrics/", metrics_view),
]
