"""Turn taking: deciding from the sound of the words whether the speaker is done."""
