# One image for every process of an inferchain network: a validator (`python -m rpc`), a
# resource node (`python -m resource_node`), the AO unit (`python -m ao`); the command says
# which. `scripts/testnet.py --emit compose DIR` writes a Compose project that runs it.
#
# The wheels are built in a full image (safe-pysha3 compiles C); the slim one installs them
# from that stage only, so nothing is downloaded when a container starts.
FROM python:3.11 AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY chain chain
COPY rpc rpc
COPY resource_node resource_node
COPY ao ao
COPY testnet testnet
COPY bench bench
COPY sim sim
COPY cli cli
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels inferchain && rm -rf /wheels
WORKDIR /inferchain
ENV PYTHONUNBUFFERED=1
EXPOSE 8545 9100 8700
CMD ["python", "-m", "rpc", "--help"]
