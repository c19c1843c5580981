"""Chat tokenisation with assistant-only loss masks, and packing without cross-contamination."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from libra.data.jsonl import DataError, Record
from libra.models.tiny import save_tiny
from libra.train.packing import Example, batch_inputs, chat_messages, pack, tokenize_chat


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = save_tiny(tmp_path_factory.mktemp("tiny"))
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def test_loss_mask_covers_exactly_the_assistant_turns(tiny):
    tok, _ = tiny
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]
    ex = tokenize_chat(tok, messages)
    learned = tok.decode([t for t, m in zip(ex.input_ids, ex.loss_mask) if m])
    assert learned == "4<|im_end|>\n6<|im_end|>\n"
    assert tok.decode(ex.input_ids) == tok.apply_chat_template(messages, tokenize=False)


def test_prompt_response_rows_and_errors():
    rec = Record({"prompt": "q", "response": "a"}, "rows.jsonl", 3)
    assert chat_messages(rec) == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(DataError, match=r"rows.jsonl:4: messages: no assistant turn"):
        chat_messages(Record({"messages": [{"role": "user", "content": "q"}]}, "rows.jsonl", 4))
    with pytest.raises(DataError, match=r"rows.jsonl:5: response: missing field"):
        chat_messages(Record({"prompt": "q"}, "rows.jsonl", 5))


def test_pack_first_fit_keeps_order_and_limit():
    exs = [Example([0] * n, [1] * n) for n in (6, 5, 3, 4, 2)]
    bins = pack(exs, 10)
    assert [[len(e.input_ids) for e in b] for b in bins] == [[6, 3], [5, 4], [2]]
    assert len(pack(exs, 10, packing=False)) == 5
    with pytest.raises(ValueError, match="exceeds max_seq_len=5"):
        pack(exs, 5)


def test_packed_rows_give_each_example_its_own_logits(tiny):
    tok, model = tiny
    a = Example(list(range(3, 12)), [0] * 4 + [1] * 5)
    b = Example(list(range(40, 47)), [0] * 2 + [1] * 5)
    inputs = batch_inputs([[a, b], [b]], pad_id=tok.pad_token_id)
    with torch.no_grad():
        packed = model(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       position_ids=inputs["position_ids"]).logits
        alone_a = model(torch.tensor([a.input_ids])).logits[0]
        alone_b = model(torch.tensor([b.input_ids])).logits[0]
    torch.testing.assert_close(packed[0, :9], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[0, 9:16], alone_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[1, :7], alone_b, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(packed).all()  # padding rows attend to themselves, never to nothing
    # targets are next tokens within an example; the loss mask never crosses into the next example
    assert inputs["targets"][0, :8].tolist() == a.input_ids[1:]
    assert inputs["loss_mask"][0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0] + [0, 1, 1, 1, 1, 1, 0]
