from django.urls import path

from django_sse.redisqueue import RedisQueueView

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("clock/", views.clock, name="clock"),
    path("clock/events/", views.ClockView.as_view(), name="clock-events"),
    path("feed/", views.feed, name="feed"),
    path(
        "feed/events/", RedisQueueView.as_view(redis_channel=views.FEED_CHANNEL), name="feed-events"
    ),
    path("objects/<int:pk>/", views.object_detail, name="object"),
    path("objects/<int:pk>/events/", views.ObjectEventsView.as_view(), name="object-events"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<slug:job_id>/", views.job_detail, name="job"),
    path("jobs/<slug:job_id>/start/", views.job_start, name="job-start"),
    path("jobs/<slug:job_id>/events/", views.JobEventsView.as_view(), name="job-events"),
    path("reconnect/", views.reconnect, name="reconnect"),
    path("reconnect/start/", views.reconnect_start, name="reconnect-start"),
    path("reconnect/events/", views.SequenceEventsView.as_view(), name="reconnect-events"),
]
