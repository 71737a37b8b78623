from django.urls import path

from users import apis, consent_apis

urlpatterns = [
    path("signup", apis.SignupApi.as_view(), name="signup"),
    path("login", apis.LoginApi.as_view(), name="login"),
    path("user", apis.UserApi.as_view(), name="user"),
    path("user/consents", consent_apis.ConsentListApi.as_view(), name="consents"),
    path(
        "user/consents/<str:purpose>",
        consent_apis.ConsentDetailApi.as_view(),
        name="consent",
    ),
]
