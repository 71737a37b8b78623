from django.urls import URLPattern, URLResolver

# Each part adds its routes here (exports, erasure).
urlpatterns: list[URLPattern | URLResolver] = []
