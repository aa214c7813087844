from django.urls import path

from . import views

urlpatterns = [
    path("events/<str:channel>/", views.ChannelView.as_view()),
    path("stats/", views.stats),
]
