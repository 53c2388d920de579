"""Analysis of one clustering run with pandas and BERTopic: topics, the risk matrix, the framework comparison."""
