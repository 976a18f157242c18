# The app on its base image (Dockerfile.base): the dependencies are in the base, so this
# build installs nothing. `cicache build --base-dockerfile Dockerfile.base -f Dockerfile.app`
# passes BASE_IMAGE=REPO:base-<hash> and labels the image io.cicache.base=REPO:base-<hash>.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /app
COPY app.py .
CMD ["python3", "app.py"]
