from django.urls import path

from users import apis

urlpatterns = [
    path("signup", apis.SignupApi.as_view(), name="signup"),
    path("login", apis.LoginApi.as_view(), name="login"),
    path("user", apis.UserApi.as_view(), name="user"),
]
