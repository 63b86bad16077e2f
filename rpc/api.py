"""The names of the JSON-RPC API (PROTOCOL 5.1, 5.2), shared by the client and the server.

`rpc.client` calls these methods and `rpc.methods.METHODS` serves them; both take the names
from here, with the message type each transaction method carries and the text a resource
node signs to call queryPendingTasks. Like `rpc.errors`, this module imports nothing of the
server side (no `rpc.server`, `rpc.methods`, `rpc.p2p`, `chain.node`), so the client stays
free of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from chain.protocol.types import (
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    CommitSecrets,
    RegisterResourceNode,
    RevealSecret,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)

# Reads
CHAIN_ID = "chainId"
GENESIS_HASH = "genesisHash"
GET_PARAMS = "getParams"
BLOCK_NUMBER = "blockNumber"
GET_BLOCK = "getBlock"
GET_BLOCK_EVENTS = "getBlockEvents"  # an extension: what a block changed (PROTOCOL 5.2)
GET_TRANSACTION = "getTransaction"
GET_ACCOUNT = "getAccount"
GET_VALIDATORS = "getValidators"
GET_RESOURCE_NODES = "getResourceNodes"
TASK_STATS = "taskStats"
GET_TASKS_BY_SENDER = "getTasksBySender"
QUERY_TASK = "queryTask"
QUERY_PENDING_TASKS = "queryPendingTasks"
# AO, the chain as the scheduler unit (PROTOCOL 8), extensions
AO_PROCESS = "aoProcess"
AO_PROCESSES = "aoProcesses"
AO_SCHEDULE = "aoSchedule"
AO_MESSAGE_BY_ID = "aoMessageById"
# OpenRPC's service discovery method (PROTOCOL 5.8), an extension
RPC_DISCOVER = "rpc.discover"

# Transactions
SUBMIT_TASK = "submitTask"
TRANSFER = "transfer"
STAKE = "stake"
UNSTAKE = "unstake"
REGISTER_RESOURCE_NODE = "registerResourceNode"
SUBMIT_INFERENCE_RESULT = "submitInferenceResult"
SUBMIT_VERIFICATION = "submitVerification"
COMMIT_SECRETS = "commitSecrets"  # PROTOCOL 4.13, an extension
REVEAL_SECRET = "revealSecret"
AO_SPAWN = "aoSpawn"
AO_MESSAGE = "aoMessage"
AO_DATA_ITEM = "aoDataItem"
AO_TERMINATE = "aoTerminate"

# Dev controls, on a dev chain of one validator (PROTOCOL 5.9), as anvil's
DEV_SNAPSHOT = "dev_snapshot"
DEV_REVERT = "dev_revert"
DEV_MINE = "dev_mine"
DEV_SET_NEXT_BLOCK_TIMESTAMP = "dev_setNextBlockTimestamp"
DEV_INCREASE_TIME = "dev_increaseTime"
DEV_SET_BALANCE = "dev_setBalance"
DEV_RESET = "dev_reset"

# The upstream names, served as the same methods
SUBMIT_REQUEST = "submitRequest"  # submitTask
SUBMIT_RESPONSE = "submitResponse"  # submitInferenceResult
ALIASES: Mapping[str, str] = MappingProxyType(
    {SUBMIT_REQUEST: SUBMIT_TASK, SUBMIT_RESPONSE: SUBMIT_INFERENCE_RESULT}
)

# The JSON-RPC method that carries each message type.
METHOD_OF_TYPE: Mapping[str, str] = MappingProxyType(
    {
        SubmitTask.TYPE: SUBMIT_TASK,
        SubmitInferenceResult.TYPE: SUBMIT_INFERENCE_RESULT,
        SubmitVerification.TYPE: SUBMIT_VERIFICATION,
        Transfer.TYPE: TRANSFER,
        Stake.TYPE: STAKE,
        Unstake.TYPE: UNSTAKE,
        RegisterResourceNode.TYPE: REGISTER_RESOURCE_NODE,
        CommitSecrets.TYPE: COMMIT_SECRETS,
        RevealSecret.TYPE: REVEAL_SECRET,
        AoSpawn.TYPE: AO_SPAWN,
        AoMessage.TYPE: AO_MESSAGE,
        AoDataItem.TYPE: AO_DATA_ITEM,
        AoTerminate.TYPE: AO_TERMINATE,
    }
)


PENDING_TASKS_TEXT_FORMAT = "queryPendingTasks:<chainId>:<address>:<TimeStamp>"
# Accepted on dev chains only, with a deprecation warning, for one release (PROTOCOL 5.1).
LEGACY_PENDING_TASKS_TEXT_FORMAT = "queryPendingTasks:<address>:<TimeStamp>"


def pending_tasks_message(chain_id: int, address: str, timestamp: int) -> str:
    """The text whose EIP-191 signature authorises a queryPendingTasks call (PROTOCOL 5.1):
    `queryPendingTasks:<chainId>:<address>:<TimeStamp>`, the address in its EIP-55 form, so a
    signature made for one chain is refused on another."""
    return f"queryPendingTasks:{chain_id}:{address}:{timestamp}"


def legacy_pending_tasks_message(address: str, timestamp: int) -> str:
    """The text of the previous release, bound to no chain (deprecated; dev chains only):
    `queryPendingTasks:<address>:<TimeStamp>`."""
    return f"queryPendingTasks:{address}:{timestamp}"
