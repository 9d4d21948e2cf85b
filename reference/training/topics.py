"""Seed material for offline training prompts, written for this project (not taken from any benchmark).

The target writes its own instructions from these (self-instruct): a topic crossed with a request kind gives
a meta-prompt; the target's sampled answer becomes a training instruction. ``TEMPLATES`` add direct
instructions built from the topics without the model. Kinds cover what the evaluation sets exercise (open
questions and writing, multi-step arithmetic, Python functions) without using their text.
"""
from __future__ import annotations

TOPICS = (
    "volcanoes", "honey bees", "the water cycle", "compound interest", "train timetables", "baking bread",
    "chess openings", "solar panels", "the Roman empire", "vaccines", "photosynthesis", "jazz music",
    "recycling plastic", "black holes", "public libraries", "coffee farming", "marathon training",
    "the printing press", "electric cars", "coral reefs", "budgeting for students", "bird migration",
    "earthquakes", "ancient Egypt", "machine learning", "renting an apartment", "gardening tomatoes",
    "the human heart", "climate change", "board games", "wind turbines", "the moon landing", "penguins",
    "job interviews", "time zones", "making pizza", "the stock market", "rainforests", "mountain hiking",
    "learning a language", "sleep hygiene", "3D printing", "the Silk Road", "dinosaurs", "bicycle repair",
    "cloud computing", "desert animals", "the Olympic games", "composting", "smartphones", "tea ceremonies",
    "lighthouses", "the periodic table", "small business marketing", "origami", "glaciers", "classical music",
    "friendship", "remote work", "city parks", "sharks", "medieval castles", "nutrition labels", "satellites",
    "a school science fair", "weather forecasts", "the internet", "pottery", "fishing boats", "museums",
    "saving energy at home", "the French revolution", "wolves", "card tricks", "a bakery's daily sales",
    "a farmer's market", "a bookstore inventory", "a road trip", "a birthday party", "a school library",
    "a bus route", "a lemonade stand", "a garden fence", "a recipe for cookies", "a painting class",
    "sorting algorithms", "text processing", "prime numbers", "matrices", "dates and calendars", "file formats",
    "string manipulation", "shopping carts", "temperature conversion", "student grades", "inventory tracking",
    "binary search", "palindromes", "word frequencies", "geometry of circles", "fractions", "percentages",
    "speed and distance", "unit conversions", "probability with dice", "a savings account", "paint mixing",
    "a parking garage", "a movie theater", "a zoo", "a football season", "a chess club", "an aquarium",
    "space exploration", "the Great Wall", "octopuses", "volunteering", "first aid", "public speaking",
    "photography", "knitting", "hurricanes", "the immune system", "cryptography", "robots", "submarines",
)

# kind -> meta-prompt; {topic} is filled in. The target's reply (first paragraph) is the instruction.
META_PROMPTS = {
    "question": "Write one interesting question that a curious person might ask about {topic}. "
                "Reply with the question only.",
    "writing": "Write one request asking an assistant to write something (an email, a story, a poem, a plan or "
               "a speech) about {topic}. Reply with the request only.",
    "math": "Write one short math word problem about {topic} that needs two or three steps of arithmetic to "
            "solve. Reply with the problem only, without the answer.",
    "code": "Write one short programming task about {topic} that asks for a single Python function. "
            "Reply with the task only.",
}

TEMPLATES = (
    "Explain {topic} to a ten-year-old.",
    "Give me three practical tips about {topic}.",
    "Write a short poem about {topic}.",
    "What are the main advantages and disadvantages of {topic}?",
    "Summarize the history of {topic} in one paragraph.",
    "Write a Python function related to {topic} and explain how it works.",
)
