from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("clock/events/", views.ClockView.as_view(), name="clock-events"),
]
