from django.urls import path

from tests.support.stats import stats

from . import views

urlpatterns = [
    path("events/<str:channel>/", views.ChannelView.as_view()),
    path("stats/", stats),
]
